// Command etcd is a stub main package that builds the etcd server from
// go.etcd.io/etcd/server/v3 at the version pinned in ../go.mod. `go install
// go.etcd.io/etcd/v3@version` refuses because etcd's root module has replace
// directives; this stub needs none.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
