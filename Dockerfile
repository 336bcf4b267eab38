# The ringtrain image: the static ringtrain binary on an empty base, so the
# image builds without pulling anything. Build the binary first, then the
# image (`make image` does both):
#
#   CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o ringtrain ./cmd/ringtrain
#   docker build -t ringtrain:dev .
#
# The image holds nothing but /ringtrain: no shell, no /tmp, no /etc/passwd
# (the binary carries its own root certificates for HTTPS). Give it writable
# volumes for --store and --data-dir.
FROM scratch
LABEL org.opencontainers.image.title="ringtrain" \
      org.opencontainers.image.description="Data-parallel training of neural networks, on one machine or a cluster" \
      org.opencontainers.image.licenses="" \
      org.opencontainers.image.source="https://github.com/ringtrain/ringtrain"
COPY ringtrain /ringtrain
USER 65532:65532
ENTRYPOINT ["/ringtrain"]
