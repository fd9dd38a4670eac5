# flashgate: one binary (`flashgate serve|worker|all|migrate|seed|users|reset`) and its pages.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY lua lua
COPY sql sql
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/flashgate /usr/local/bin/flashgate
COPY lua lua
COPY public public
ENV FLASHGATE_LISTEN=0.0.0.0:8080 FLASHGATE_PUBLIC_DIR=/app/public
EXPOSE 8080
# flashgate writes nothing to disk: it runs as an unprivileged user (Kubernetes' manifests in
# deploy/k8s/ also ask for a non-root user and a read-only root filesystem)
USER 65532:65532
ENTRYPOINT ["flashgate"]
CMD ["all"]
