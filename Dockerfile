# sbx-exec as the container's ENTRYPOINT around the example Bun control plane.
#
#   docker build -t sbx-demo .
#   docker run --rm -p 8080:8080 --cap-add SYS_ADMIN \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined sbx-demo
#
# sbx-exec needs to create namespaces for the platform and user contexts (CAP_SYS_ADMIN and a
# seccomp profile that allows clone/unshare); the control plane itself stays in the container's
# own namespaces as its PID 1's child.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY policies ./policies
RUN cargo build --release --locked

FROM oven/bun:1-debian
RUN apt-get update && apt-get install -y --no-install-recommends procps python3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sbx-exec /usr/local/bin/sbx-exec
COPY policies/ /usr/share/sbx/policies/
COPY policies/default.toml /etc/sbx/policy.toml
COPY examples/bun-server/ /app/
RUN mkdir -p /workspace
WORKDIR /app
ENV SBX_EXEC=/usr/local/bin/sbx-exec
EXPOSE 8080 8888
ENTRYPOINT ["sbx-exec", "--ctx", "control", "--"]
CMD ["bun", "run", "server.ts"]
