# triggerd container: build (and unit-test) on Debian bookworm, then run
# from a slim image holding only the binary and its shared libraries.
#   docker build -t triggerd .
#   docker run -p 8080:8080 -v triggerd-state:/var/lib/triggerd \
#     -v $PWD/conf/triggerd.yaml:/etc/triggerd/triggerd.yaml:ro \
#     -e DBT_PERSONAL_TOKEN=... -e TRIGGERD_INBOUND_TOKEN=... triggerd

FROM debian:bookworm AS build
# The same packages scripts/deps.sh installs (a test keeps them equal).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc make cmake pkg-config python3 ca-certificates \
      libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev \
      libsqlite3-dev libsystemd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DTRIGGERD_WERROR=ON \
 && cmake --build build -j"$(nproc)" \
 && cd build && ctest -R '^unit\.' --output-on-failure

FROM debian:bookworm-slim
# Runtime libraries only: one package per library the binary links
# (a test compares this list with ldd of the built binary).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libjansson4 libyaml-0-2 libsqlite3-0 \
      libsystemd0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/triggerd \
      --shell /usr/sbin/nologin triggerd \
 && mkdir -p /var/lib/triggerd /etc/triggerd \
 && chown triggerd:triggerd /var/lib/triggerd && chmod 0700 /var/lib/triggerd
COPY --from=build /src/build/triggerd /usr/local/bin/triggerd
COPY conf/triggerd.yaml /etc/triggerd/triggerd.yaml
ENV STATE_DIRECTORY=/var/lib/triggerd
USER triggerd:triggerd
VOLUME ["/var/lib/triggerd"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/triggerd", "--health", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/triggerd"]
CMD ["-c", "/etc/triggerd/triggerd.yaml"]
