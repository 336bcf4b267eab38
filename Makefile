# ringtrain build shortcuts. `make image` builds the static binary and the
# container image; `make etcd-image` builds the etcd image the cluster
# manifests and the Docker cluster test use.

GO          ?= go
IMAGE       ?= ringtrain:dev
ETCD_IMAGE  ?= ringtrain-etcd:dev
DOCKER      ?= docker

.PHONY: all build image etcd-image images test test-manifests cluster-test clean

all: build

# The static binary the image holds (./ringtrain, ignored by git).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o ringtrain ./cmd/ringtrain

# The ringtrain image from ./ringtrain (the build context is the binary only,
# see .dockerignore).
image: build
	$(DOCKER) build -t $(IMAGE) .

# The etcd image: the real etcd server, built from the module cache at the
# version in go.mod, in a throwaway build context.
etcd-image:
	@set -e; ctx=$$(mktemp -d); trap 'rm -rf "$$ctx"' EXIT; \
	echo "CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $$ctx/etcd go.etcd.io/etcd/server/v3"; \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o "$$ctx/etcd" go.etcd.io/etcd/server/v3; \
	mkdir "$$ctx/data"; \
	$(DOCKER) build -t $(ETCD_IMAGE) -f deploy/docker/etcd.Dockerfile "$$ctx"

images: image etcd-image

test:
	$(GO) test -timeout 30m ./...

# Render every kustomize overlay and check it against the binary's flags.
test-manifests:
	$(GO) test -run 'TestManifests' ./cmd/ringtrain

# Train MNIST on etcd + a coordinator + 3 workers in Docker, kill and cut off
# workers, restart from nothing and check the run resumes.
cluster-test:
	IMAGE=$(IMAGE) ETCD_IMAGE=$(ETCD_IMAGE) deploy/docker/cluster-test.sh

clean:
	rm -f ringtrain
