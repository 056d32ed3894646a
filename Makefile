# Convenience targets; CI runs .ci/run, which calls the same scripts.
.PHONY: release image test
release:            ## static binaries for linux/darwin amd64/arm64 + SHA256SUMS in dist/
	scripts/release.sh
image:              ## the container image, with buildah (see docs/deploy.md)
	scripts/image.sh
test:
	go test -race ./...
