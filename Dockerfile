# sbx-exec as the container's ENTRYPOINT around the example Bun control plane (README.md, "As the
# container's ENTRYPOINT"). Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1
# before that): only the stages the image needs are built.
#
#   docker build -t sbx-demo .
#   (umask 077 && openssl rand -hex 32 > token && echo "JUPYTER_TOKEN=$(openssl rand -hex 32)" > jupyter.env)
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8888:8888 \
#     --cap-add SYS_ADMIN \
#     -v "$PWD/token:/run/secrets/sbx_api_token:ro" --env-file jupyter.env sbx-demo
#
# Two services, as policies/sandbox-sdk.toml says: the Bun control plane (API on 8080) runs
# unconfined under sbx-exec; the Jupyter server (8888, its kernels run user code) runs confined in
# the `notebook` context, started by sbx-exec as a service of control mode. sbx-exec binds both
# ports before either starts and holds them across restarts. JUPYTER_TOKEN comes from the run-time
# environment (serve.py reads only the variable, and refuses to serve without it), never the image.
#
# --cap-add SYS_ADMIN: sbx-exec creates the pid/mount/ipc/uts namespaces of the platform and user
# contexts and mounts their private /proc and tmpfs (Docker's default seccomp profile allows
# unshare/mount/setns only with that capability, so seccomp stays confined); it is the only
# capability added: the sandboxes' network namespaces are made in user namespaces of their own (no
# NET_ADMIN), and joins of the persistent `user` take the keeper's namespaces from it (no
# SYS_PTRACE). On hosts with AppArmor also --security-opt apparmor=unconfined (docker-default denies
# mount). README.md, "As the container's ENTRYPOINT", says more.
#
# Offline / CI builds (tests/container/run.sh): the base images are build arguments, and
# SBX_BIN=prebuilt takes an sbx-exec already built on the host and staged as
# target/sbx-bin/sbx-exec (with target/sbx-jupyter/ all of target/ in the build context, see
# .dockerignore) instead of compiling it again:
#
#   docker build --build-arg RUNTIME_IMAGE=my/bun-bookworm --build-arg SBX_BIN=prebuilt -t sbx-demo .
#
# SBX_JUPYTER=prebuilt likewise takes the Jupyter venv from the context (target/sbx-jupyter/, a
# copy of a venv made by `python3 -m venv /opt/sbx-jupyter` with jupyter_server and ipykernel on
# Debian bookworm's /usr/bin/python3, the one file tree of target/ besides the binary that
# .dockerignore lets in) instead of `pip install` from PyPI:
#
#   docker build ... --build-arg SBX_JUPYTER=prebuilt -t sbx-demo .
#
# No "# syntax=" line on purpose: it would make BuildKit fetch a frontend image from a registry.

# The Rust toolchain that compiles sbx-exec (stage "build").
ARG BUILD_IMAGE=rust:1-bookworm
# The runtime: Debian bookworm with `bun` on PATH (oven/bun installs it as /usr/local/bin/bun).
ARG RUNTIME_IMAGE=oven/bun:1-debian
# Where sbx-exec comes from: "build" (compile it here) or "prebuilt" (copy it from the context).
ARG SBX_BIN=build
# Where /opt/sbx-jupyter comes from: "pip" (a venv made here, from PyPI) or "prebuilt" (copied
# from the context's target/sbx-jupyter/).
ARG SBX_JUPYTER=pip

FROM ${BUILD_IMAGE} AS build
# The git revision for `sbx-exec --version` (the context has no .git).
ARG SBX_GIT_REV=
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo ./.cargo
COPY src ./src
COPY policies ./policies
RUN SBX_GIT_REV="$SBX_GIT_REV" cargo build --release --locked \
    && install -D -m 0755 target/*/release/sbx-exec /out/sbx-exec

FROM scratch AS prebuilt
# Static-pie (.cargo/config.toml): it needs no libc of the image (tests/container/run.sh checks).
COPY target/sbx-bin/sbx-exec /out/sbx-exec

FROM ${SBX_BIN} AS sbx-bin

FROM ${RUNTIME_IMAGE} AS runtime-base
# ps/pkill (procps) and python3 for the code run in `user` and for Jupyter; skipped when the base
# has them already (the CI base does, and is built without network).
RUN if ! command -v ps >/dev/null || ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends procps python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# The Jupyter server's venv on the runtime's own /usr/bin/python3 (bin/python3 links to it,
# pyvenv.cfg says home = /usr/bin). python3-venv (ensurepip) is needed only to make it.
FROM runtime-base AS jupyter-pip
RUN if ! python3 -c 'import ensurepip' 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && /usr/bin/python3 -m venv /opt/sbx-jupyter \
    && /opt/sbx-jupyter/bin/pip install --no-cache-dir jupyter_server ipykernel

FROM scratch AS jupyter-prebuilt
# Made on Debian bookworm's /usr/bin/python3 (3.11) like the runtime's; the build checks below.
COPY target/sbx-jupyter/ /opt/sbx-jupyter/

FROM jupyter-${SBX_JUPYTER} AS sbx-jupyter

FROM runtime-base AS runtime
COPY --from=sbx-bin /out/sbx-exec /usr/local/bin/sbx-exec
COPY --from=sbx-jupyter /opt/sbx-jupyter/ /opt/sbx-jupyter/
# The adopter the policy's `jupyter` service runs (it serves the socket control hands it).
COPY examples/jupyter/serve.py /usr/share/sbx/examples/jupyter/serve.py
# (COPY makes it all root-owned; the venv runs on this image's python3: check it does.)
RUN chmod 0644 /usr/share/sbx/examples/jupyter/serve.py \
    && grep -qx 'home = /usr/bin' /opt/sbx-jupyter/pyvenv.cfg \
    && [ "$(readlink -f /opt/sbx-jupyter/bin/python3)" = "$(readlink -f /usr/bin/python3)" ] \
    && PYTHONDONTWRITEBYTECODE=1 /opt/sbx-jupyter/bin/python3 -c 'import jupyter_server, ipykernel' \
    && PYTHONDONTWRITEBYTECODE=1 /opt/sbx-jupyter/bin/python3 -m jupyter kernelspec list | grep -q python3
COPY policies/ /usr/share/sbx/policies/
# The sandbox SDK policy, unchanged: control (this ENTRYPOINT, ports 8080 and 8888 held across
# restarts, the Jupyter service), platform (listed tools with secrets), a persistent user context
# and notebook (Jupyter). Root-owned, 0644. Its [context.user.limits] say `required = false`: where
# the cgroup tree is read-only (Docker mounts it so) `user` runs without them; limit the container
# instead: docker run --pids-limit 1024 --memory 4g --cpus 1.5 (README.md, Docker).
RUN mkdir -p /etc/sbx && cp /usr/share/sbx/policies/sandbox-sdk.toml /etc/sbx/policy.toml
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
# Jupyter's token: JUPYTER_TOKEN in the run-time environment (--env-file of a 0600 file, or -e);
# serve.py reads only that variable and refuses to serve without it. Never an ENV here (it would be
# in the image). The policy's notebook context lets it through (env.allow), `user` does not.
EXPOSE 8080 8888
ENTRYPOINT ["sbx-exec", "--ctx", "control", "--"]
CMD ["bun", "run", "server.ts"]
