// Package e2e holds the multi-process tests of Kumoi: real `kumoi agent`
// processes (started by internal/testcluster) on 127.0.x.y addresses,
// killed, stopped and restarted while clients write to them. The tests are
// in _test.go files; this package has no other code.
//
// Run them with the binary that `make build` produced:
//
//	KUMOI_BIN=$PWD/bin/kumoi go test -tags libvirt_dlopen -race -count=1 ./test/e2e/
//
// Without KUMOI_BIN the binary is built once from the module root.
package e2e
