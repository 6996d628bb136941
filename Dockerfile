# triggerd container: build (and unit-test) on Debian bookworm, then run
# from a slim image holding only the binary and its shared libraries.
# The image ships no config of its own: mount yours at
# /etc/triggerd/triggerd.yaml (until then triggerd refuses to start and says
# so). README "In a container" has the whole recipe; in short:
#   docker build -t triggerd .            # podman: add --format docker
#   docker run -p 8080:8080 -v triggerd-state:/var/lib/triggerd \
#     -v $PWD/my-triggerd.yaml:/etc/triggerd/triggerd.yaml:ro \
#     --secret ... triggerd

FROM debian:bookworm AS build
# The same packages scripts/deps.sh installs (a test keeps them equal).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc make cmake pkg-config python3 ca-certificates \
      libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev \
      libsqlite3-dev libsystemd-dev libpq-dev \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DTRIGGERD_WERROR=ON \
 && cmake --build build -j"$(nproc)" \
 && cd build && ctest -R '^unit\.' --output-on-failure

FROM debian:bookworm-slim
# Runtime libraries only: one package per library the binary links
# (a test compares this list with ldd of the built binary). The layer is
# kept small whatever the base: no recommends, apt's cache and lists
# removed here rather than trusting the base image's own cleanup hook.
# The user has a fixed uid and gid (10001:10001) so that a bind-mounted
# state directory or a 0600 config can be chowned to it ahead of time, and
# USER is numeric so that Kubernetes' runAsNonRoot can check it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libjansson4 libyaml-0-2 libsqlite3-0 libpq5 \
      libsystemd0 ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt \
      /var/log/dpkg.log \
 && groupadd --system --gid 10001 triggerd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/triggerd --shell /usr/sbin/nologin triggerd \
 && mkdir -p /var/lib/triggerd /etc/triggerd \
 && chown 10001:10001 /var/lib/triggerd && chmod 0700 /var/lib/triggerd
COPY --from=build /src/build/triggerd /usr/local/bin/triggerd
# An example only, not loaded: it delivers to a stand-in on 127.0.0.1, which
# inside a container is the container itself.
COPY conf/triggerd.yaml /etc/triggerd/triggerd.example.yaml
ENV STATE_DIRECTORY=/var/lib/triggerd
USER 10001:10001
VOLUME ["/var/lib/triggerd"]
EXPOSE 8080
# Kept by docker; podman and buildah keep it only with --format docker.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/triggerd", "--health", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/triggerd"]
CMD ["-c", "/etc/triggerd/triggerd.yaml"]
