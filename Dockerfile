# One image for every component (connector, persister, operator, api): `tiktok-service <command>`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY tiktok_service ./tiktok_service
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Non-root, matching the connector pod's securityContext (runAsUser 10001); the root
# filesystem is mounted read-only in the pods, so nothing here writes at run time.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tiktok
USER 10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT []
CMD ["tiktok-service", "--help"]
