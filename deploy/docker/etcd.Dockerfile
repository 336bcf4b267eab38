# The etcd image: the real etcd server (go.etcd.io/etcd/server/v3, the
# version in ringtrain's go.mod) as a static binary on an empty base.
# `make etcd-image` builds it; the build context is a folder holding the
# binary `etcd` and an empty `data/` folder that becomes the (non-root owned)
# default data directory.
FROM scratch
LABEL org.opencontainers.image.title="ringtrain-etcd" \
      org.opencontainers.image.description="etcd server for ringtrain clusters, built from go.etcd.io/etcd/server/v3"
COPY etcd /etcd
COPY --chown=65532:65532 data /var/lib/etcd
USER 65532:65532
EXPOSE 2379 2380
ENTRYPOINT ["/etcd"]
CMD ["--data-dir=/var/lib/etcd"]
