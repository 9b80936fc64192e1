# syntax=docker/dockerfile:1
# Multi-stage build: compile in the full Rust image, run in a slim Debian image.
#
#   docker build -t openai-realtime-relay .
#   docker run --rm -p 8080:8080 --env-file .env openai-realtime-relay

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and compiled dependencies between builds (BuildKit);
# the binary is copied out because the target directory is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/openai-realtime-relay /usr/local/bin/openai-realtime-relay

FROM debian:bookworm-slim
# The binary carries its own webpki roots for the upstream; the system store is there for
# operators who mount a private CA (UPSTREAM_CA_FILE) or debug TLS from inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relay \
    && mkdir -p /var/lib/openai-realtime-relay \
    && chown relay /var/lib/openai-realtime-relay
COPY --from=build /usr/local/bin/openai-realtime-relay /usr/local/bin/openai-realtime-relay
USER relay
# The usage ledger (USAGE_STATE_FILE, default relay-usage.json in the working directory) lives
# here; mount a volume on it so usage totals and budgets survive container restarts.
WORKDIR /var/lib/openai-realtime-relay
VOLUME /var/lib/openai-realtime-relay
# Inside a container the relay must listen on every interface; publish the port with -p.
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
# docker stop sends this; the relay drains (every client gets close 1012) within
# SHUTDOWN_TIMEOUT, then exits. docker stop's default grace period is 10 s: pass -t 15 or more.
STOPSIGNAL SIGTERM
# The image has no curl: the binary checks itself. `openai-realtime-relay healthcheck` GETs
# http://127.0.0.1:$PORT/health and exits 0 on 200, 1 otherwise, so a draining relay (503) turns
# unhealthy at once and orchestrators stop sending it new clients.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["openai-realtime-relay", "healthcheck"]
CMD ["openai-realtime-relay"]
