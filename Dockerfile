# callrec's container image: `callrec serve` (or `reconcile`, `backfill`, `init`) on Debian
# bookworm's glibc runtime, as a non-root user, everything it writes under /var/lib/callrec.
#
# Two ways to build it:
#   docker build -t callrec .                    # a real pipeline: compiles the release build
#   docker build -t callrec --target prebuilt .  # a binary built outside, at dist/callrec (CI)
#
# The stages are ordered so that `--target prebuilt` never needs the Rust toolchain's image
# (the legacy builder builds every stage up to its target).

# checkov:skip=CKV_DOCKER_2:Health is the load balancer's /readyz check (ECS ignores HEALTHCHECK); the image has no HTTP client to run one.
# checkov:skip=CKV_DOCKER_7:The bases are tagged (bookworm-slim, 1.89-bookworm) through build arguments, which the check cannot read; pin them by digest in a pipeline.
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.89-bookworm

# What every runtime needs: CA certificates (HTTPS to OCP and AWS), a user, one writable folder.
FROM ${DEBIAN_IMAGE} AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 callrec \
 && useradd --system --uid 10001 --gid callrec --home-dir /var/lib/callrec --no-create-home \
      --shell /usr/sbin/nologin callrec \
 && install -d -o callrec -g callrec -m 0750 /var/lib/callrec /var/lib/callrec/tmp
# The relative defaults (spool, SQLite, folder store) and temporary files land in the volume; a
# read-only root filesystem is fine.
WORKDIR /var/lib/callrec
ENV TMPDIR=/var/lib/callrec/tmp \
    CALLREC_SERVER__LISTEN=0.0.0.0:8080 \
    CALLREC_SERVER__SPOOL_DIR=/var/lib/callrec/spool
VOLUME ["/var/lib/callrec"]
EXPOSE 8080
USER callrec:callrec
ENTRYPOINT ["/usr/local/bin/callrec"]
CMD ["serve", "--log-json"]

# A binary built outside (CI builds it once for its tests): `dist/callrec` in the build context,
# stripped and executable (owned by root, as COPY writes it).
FROM runtime-base AS prebuilt
COPY dist/callrec /usr/local/bin/callrec
RUN ["/usr/local/bin/callrec", "--version"]

# A real pipeline: the release build, from the locked dependencies.
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin callrec \
 && strip --strip-all target/release/callrec \
 && install -m 0755 target/release/callrec /callrec

FROM runtime-base AS runtime
COPY --from=builder /callrec /usr/local/bin/callrec
RUN ["/usr/local/bin/callrec", "--version"]
