# netwatch as a sidecar image.
#
#   docker build -t netwatch .
#   docker run -d --name netwatch -p 10980:10980 \
#       -v /var/run/docker.sock:/var/run/docker.sock \
#       --group-add "$(stat -c %g /var/run/docker.sock)" netwatch
#
# Build arguments:
#   BASE_IMAGE     the Python base (3.11 or newer, with venv); default the
#                  public python:3.12-slim
#   EXTRA_CA_FILE  a PEM file in the build context added to the trusted CAs
#                  while installing (builds behind a TLS-inspecting proxy);
#                  the default adds nothing
#   VERSION        the image's version label
#
# What it needs at run time: the Docker socket, read-write (exec is a write).
# The socket is root-equivalent; see README, "Security". The exec engine needs
# no capability and no tool on netwatch's side, so the image runs as an
# unprivileged user that only needs the socket's group (--group-add).

ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG EXTRA_CA_FILE=deploy/no-extra-ca.pem
COPY ${EXTRA_CA_FILE} /tmp/extra-ca.pem
RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca.pem > /tmp/ca-bundle.pem \
    && python3 -m venv /opt/netwatch
COPY pyproject.toml README.md /src/
COPY netwatch /src/netwatch
RUN PIP_CERT=/tmp/ca-bundle.pem /opt/netwatch/bin/pip install \
        --no-cache-dir --disable-pip-version-check /src \
    && /opt/netwatch/bin/netwatch --version

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="netwatch" \
      org.opencontainers.image.description="Proves, continuously, which Docker containers can reach which, and how well." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/netwatch/netwatch"
COPY --from=build /opt/netwatch /opt/netwatch
ENV PATH=/opt/netwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user needs no entry in /etc/passwd (slim bases may lack useradd).
USER 10001:10001
EXPOSE 10980
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["netwatch", "health"]
ENTRYPOINT ["netwatch"]
CMD ["run"]
