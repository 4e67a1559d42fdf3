# One image for every component (connector, persister, operator, api): `tiktok-service <command>`.
# Build it with `make image` (scripts/build-image.sh), or plainly: `docker build -t tiktok-service .`
#
# The base is the official Python image, pinned to the Debian release (bookworm) so that a local
# stand-in built from Debian packages (where no registry is reachable) has the same Python 3.11.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The dependency list alone, so that editing pyproject.toml elsewhere (tool settings) does not
# reinstall the dependencies: the layer below is keyed on this file's content.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /
RUN python3 -c "import tomllib; print(*tomllib.load(open('/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
    > /requirements.txt

FROM ${BASE_IMAGE} AS build
# binutils' strip: compiled extensions ship with debug info (uvloop's 13 MB is 12 MB of it).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: a change to the code does not reinstall them.
# The host's pip configuration and CA bundle come in as build secrets when given (an internal
# index, a TLS-inspecting proxy); they never land in a layer. Without them pip uses its defaults.
COPY constraints.txt ./
COPY --from=requirements /requirements.txt ./
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca-bundle.pem \
    --mount=type=cache,target=/root/.cache/pip \
    PIP_CONFIG_FILE=/run/secrets/pip.conf \
    pip install --disable-pip-version-check --use-pep517 --prefix=/install -c constraints.txt -r requirements.txt \
    && find /install -name '*.so*' -type f -exec strip --strip-debug {} +
COPY pyproject.toml README.md ./
COPY tiktok_service ./tiktok_service
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca-bundle.pem \
    --mount=type=cache,target=/root/.cache/pip \
    PIP_CONFIG_FILE=/run/secrets/pip.conf \
    pip install --disable-pip-version-check --prefix=/install --no-deps .

FROM ${BASE_IMAGE}
# Non-root, matching the pods' securityContext (runAsUser 10001). The root filesystem is
# mounted read-only in the pods: nothing here writes at run time (bytecode is compiled at
# build time, hence PYTHONDONTWRITEBYTECODE).
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tiktok
COPY --from=build /install /usr/local
USER 10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT []
CMD ["tiktok-service", "--help"]
