# sbx-exec as the container's ENTRYPOINT around the example Bun control plane (README.md, "As the
# container's ENTRYPOINT"). Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1
# before that): only the stages the image needs are built.
#
#   docker build -t sbx-demo .
#   install -m 0600 /dev/null token && openssl rand -hex 32 > token
#   docker run --rm -p 127.0.0.1:8080:8080 --cap-add SYS_ADMIN --cap-add SYS_PTRACE \
#     -v "$PWD/token:/run/secrets/sbx_api_token:ro" sbx-demo
#
# --cap-add SYS_ADMIN: sbx-exec creates the pid/mount/ipc/uts namespaces of the platform and user
# contexts and mounts their private /proc and tmpfs (Docker's default seccomp profile allows
# unshare/mount/setns only with that capability, so seccomp stays confined). --cap-add SYS_PTRACE:
# the persistent `user` context's keeper is non-dumpable, and reading its /proc/PID/ns/pid needs
# it. On hosts with AppArmor also --security-opt apparmor=unconfined (docker-default denies
# mount). README.md, "As the container's ENTRYPOINT", says more.
#
# Offline / CI builds (tests/container/run.sh): the base images are build arguments, and
# SBX_BIN=prebuilt takes an sbx-exec already built on the host (target/release/sbx-exec, the only
# file of target/ in the build context, see .dockerignore) instead of compiling it again:
#
#   docker build --build-arg RUNTIME_IMAGE=my/bun-bookworm --build-arg SBX_BIN=prebuilt -t sbx-demo .
#
# No "# syntax=" line on purpose: it would make BuildKit fetch a frontend image from a registry.

# The Rust toolchain that compiles sbx-exec (stage "build").
ARG BUILD_IMAGE=rust:1-bookworm
# The runtime: Debian bookworm with `bun` on PATH (oven/bun installs it as /usr/local/bin/bun).
ARG RUNTIME_IMAGE=oven/bun:1-debian
# Where sbx-exec comes from: "build" (compile it here) or "prebuilt" (copy it from the context).
ARG SBX_BIN=build

FROM ${BUILD_IMAGE} AS build
# The git revision for `sbx-exec --version` (the context has no .git).
ARG SBX_GIT_REV=
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY policies ./policies
RUN SBX_GIT_REV="$SBX_GIT_REV" cargo build --release --locked \
    && install -D -m 0755 target/release/sbx-exec /out/sbx-exec

FROM scratch AS prebuilt
# Built on a glibc no newer than bookworm's 2.36 (tests/container/run.sh checks).
COPY target/release/sbx-exec /out/sbx-exec

FROM ${SBX_BIN} AS sbx-bin

FROM ${RUNTIME_IMAGE} AS runtime
# ps/pkill (procps) and python3 for the code run in `user`; skipped when the base has them already
# (the CI base does, and is built without network).
RUN if ! command -v ps >/dev/null || ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends procps python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=sbx-bin /out/sbx-exec /usr/local/bin/sbx-exec
COPY policies/ /usr/share/sbx/policies/
# The sandbox SDK policy: control (this ENTRYPOINT, ports 8080 and 8888 held across restarts),
# platform (listed tools with secrets) and a persistent user context. Root-owned, 0644. Without
# its [context.user.limits] table: Docker mounts the cgroup hierarchy read-only in the container
# (and, with cgroup v1, names the container's cgroup by its host path), so sbx-exec cannot create
# the context's cgroup and would refuse every `user` call (125). Limit the container instead:
# docker run --pids-limit 1024 --memory 4g --cpus 1.5 (README.md, Docker).
RUN mkdir -p /etc/sbx \
    && sed '/^\[context\.user\.limits\]/,/^$/d' /usr/share/sbx/policies/sandbox-sdk.toml > /etc/sbx/policy.toml \
    && ! grep -q '^\[context\.user\.limits\]' /etc/sbx/policy.toml
# The example server imports the client package by relative path: keep the repository layout.
COPY clients/bun/src/ /opt/sbx/clients/bun/src/
COPY examples/bun-server/ /opt/sbx/examples/bun-server/
# The user context's root is host uid/gid 100000 (identity in the policy): the work areas it
# writes belong to that uid; root (the control plane) still reads and writes everything there.
RUN chmod 0755 /usr/local/bin/sbx-exec && chmod 0644 /etc/sbx/policy.toml \
    && mkdir -p /workspace /run/secrets \
    && chown 100000:100000 /workspace /home \
    && command -v bun >/dev/null \
    && sbx-exec policy check /etc/sbx/policy.toml
WORKDIR /opt/sbx/examples/bun-server
ENV SBX_EXEC=/usr/local/bin/sbx-exec
# The API token (the server requires `Authorization: Bearer <token>` on every route but GET
# /health). Provide the file at run time, root-owned and mode 0600, never in the image:
#   -v /path/to/token:/run/secrets/sbx_api_token:ro      (or a docker/compose secret of that name)
ENV SBX_API_TOKEN_FILE=/run/secrets/sbx_api_token
EXPOSE 8080 8888
ENTRYPOINT ["sbx-exec", "--ctx", "control", "--"]
CMD ["bun", "run", "server.ts"]
