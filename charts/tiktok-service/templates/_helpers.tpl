{{/*
Names are fixed (`tiktok-<component>`), as the operator, the connector pods and the plain
manifests in deploy/ refer to them: install one release per namespace.
*/}}

{{- define "tiktok.labels" -}}
app.kubernetes.io/part-of: tiktok-service
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of a component's objects: (dict "root" $ "name" "tiktok-api") */}}
{{- define "tiktok.componentLabels" -}}
app.kubernetes.io/name: {{ .name }}
{{ include "tiktok.labels" .root }}
{{- end }}

{{/* The image of every component and of the connector pods. */}}
{{- define "tiktok.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Namespaces the operator serves: its own unless listed. */}}
{{- define "tiktok.servedNamespaces" -}}
{{- $served := .Values.operator.namespaces | default (list .Release.Namespace) -}}
{{ toJson $served }}
{{- end }}

{{/* An env var read from a Secret key: (dict "env" "API_REDIS_URL" "ref" .Values.api.redis) */}}
{{- define "tiktok.secretEnv" -}}
- name: {{ .env }}
  valueFrom: {secretKeyRef: {name: {{ .ref.secretName }}, key: {{ .ref.key }}}}
{{- end }}

{{/* Extra env vars from a map (component.env): name -> string. */}}
{{- define "tiktok.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{- define "tiktok.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{- define "tiktok.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/* nodeSelector, tolerations, affinity, priorityClassName of a component (its values). */}}
{{- define "tiktok.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{- define "tiktok.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The operator's settings (the tiktok-operator ConfigMap's data; see OperatorSettings). */}}
{{- define "tiktok.operatorConfig" -}}
{{- $op := .Values.operator -}}
OPERATOR_NAMESPACES: {{ include "tiktok.servedNamespaces" . | squote }}
OPERATOR_PEERING_NAME: {{ $op.peeringName }}
OPERATOR_CONNECTOR_IMAGE: {{ $op.connector.image | default (include "tiktok.image" .) }}
OPERATOR_CONNECTOR_IMAGE_PULL_POLICY: {{ .Values.image.pullPolicy }}
OPERATOR_CONNECTOR_SECRET_NAME: {{ $op.connector.secretName }}
OPERATOR_CONNECTOR_HTTP_PORT: {{ $op.connector.httpPort | quote }}
OPERATOR_RESYNC_INTERVAL_S: {{ $op.resyncIntervalSeconds | quote }}
OPERATOR_STATUS_MIN_INTERVAL_S: {{ $op.statusMinIntervalSeconds | quote }}
# Connection defaults for Livestreams without spec.connection (README, "Connection options"),
# set through `operator.env`. Secrets are referenced by name and resolved by the kubelet; the
# operator never reads them.
#   OPERATOR_DEFAULT_PROXY_SECRET_NAME: tiktok-egress        # key `proxies`: one proxy URL per line
#   OPERATOR_DEFAULT_SESSION_SECRET_NAME: tiktok-account     # keys `sessionid`, `tt-target-idc`
#   OPERATOR_SESSION_SIGN_HOST: api.eulerstream.com          # the sign server trusted with sessions
#   OPERATOR_CONNECTOR_LANGUAGE / _REGION / _TIMEZONE: en / US / America/New_York
# What a Livestream's spec.connector may ask for (README, "Admin-only fields"): beyond these
# the Livestream is Failed with the reason, and gets no pod.
OPERATOR_CONNECTOR_MAX_RESOURCES: {{ toJson $op.connector.maxResources | squote }}
OPERATOR_CONNECTOR_ALLOWED_PRIORITY_CLASSES: {{ toJson $op.connector.allowedPriorityClasses | squote }}
OPERATOR_CONNECTOR_ALLOWED_TOLERATION_KEYS: {{ toJson $op.connector.allowedTolerationKeys | squote }}
{{- range $name, $value := $op.env }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
