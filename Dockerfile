# frostnode container image: one static binary FROM scratch, running as uid 10001, with its
# keys in the /data volume.
#
# Build it the usual way (compiles inside the official Rust image):
#
#     docker build -t frostnode:local .
#
# Or, where no image can be pulled, package a static binary built on the host:
#
#     RUSTFLAGS="-C target-feature=+crt-static" \
#         cargo build --release --locked --target x86_64-unknown-linux-gnu
#     docker build --target prebuilt -t frostnode:local .
#
# The `prebuilt` stage comes first on purpose: the legacy builder builds every stage before
# the requested target, and nothing before `prebuilt` needs to be pulled.

FROM scratch AS prebuilt
COPY target/x86_64-unknown-linux-gnu/release/frostnode /usr/local/bin/frostnode
COPY --chown=10001:10001 docker/data/ /data/
USER 10001:10001
VOLUME ["/data"]
EXPOSE 7000 8080
ENTRYPOINT ["/usr/local/bin/frostnode"]
CMD ["run", "--config", "/etc/frostnode/node.toml"]

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target x86_64-unknown-linux-gnu \
    && cp target/x86_64-unknown-linux-gnu/release/frostnode /frostnode

FROM scratch AS runtime
COPY --from=build /frostnode /usr/local/bin/frostnode
COPY --chown=10001:10001 docker/data/ /data/
USER 10001:10001
VOLUME ["/data"]
EXPOSE 7000 8080
ENTRYPOINT ["/usr/local/bin/frostnode"]
CMD ["run", "--config", "/etc/frostnode/node.toml"]
