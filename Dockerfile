# syntax=docker/dockerfile:1
# tagbridge: multi-stage build, slim non-root runtime.
#   build:  docker build -t tagbridge .
#   run:    docker run -p 8080:8080 -v tagbridge-data:/var/lib/tagbridge \
#             -v $PWD/config/tagbridge.yaml:/etc/tagbridge/tagbridge.yaml:ro \
#             -e PINTEREST_ACCESS_TOKEN=... tagbridge
# Ports:
#   8080  public ingest (server.listen): /g/collect, /mp/collect, /data, /healthz, /readyz.
#   9090  admin (server.admin_listen): /metrics and the /debug page. Its default,
#         127.0.0.1:9090, is unreachable from outside the container; to scrape it, bind it
#         with `server.admin_listen: 0.0.0.0:9090` (or TAGBRIDGE__SERVER__ADMIN_LISTEN) and
#         publish it to a private address only (e.g. -p 127.0.0.1:9090:9090, or the pod IP
#         in Kubernetes). Never publish 9090 to the internet, and do not use `docker run -P`
#         (it publishes every EXPOSEd port on all host interfaces): use explicit -p.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | tail -n +2); do echo 'fn main() {}' > "benches/$b.rs"; done \
    && cargo build --release --locked --bin tagbridge \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tagbridge \
    && cp target/release/tagbridge /usr/local/bin/tagbridge

FROM debian:bookworm-slim
# TLS roots are compiled in (rustls + webpki-roots): no ca-certificates package needed.
RUN groupadd --system --gid 10001 tagbridge \
    && useradd --system --uid 10001 --gid tagbridge --home-dir /var/lib/tagbridge --shell /usr/sbin/nologin tagbridge \
    && mkdir -p /var/lib/tagbridge/data /etc/tagbridge \
    && chown -R tagbridge:tagbridge /var/lib/tagbridge
COPY --from=builder /usr/local/bin/tagbridge /usr/local/bin/tagbridge
COPY config/tagbridge.yaml /etc/tagbridge/tagbridge.yaml
# The queue lives under ./data (queue.path: ./data/queue) relative to this directory.
WORKDIR /var/lib/tagbridge
VOLUME ["/var/lib/tagbridge/data"]
USER tagbridge:tagbridge
# 8080: public ingest. 9090: admin (/metrics, /debug), internal only, never public.
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/tagbridge", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/tagbridge"]
CMD ["serve", "--config", "/etc/tagbridge/tagbridge.yaml"]
