package up

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Preflight checks, without starting anything, what Start needs: o's
// topology, the binaries in o.BinDir (or a Go toolchain and the source
// tree to build them) and every fixed address free. Each error names the
// thing and its fix; nil means Start can go.
func Preflight(o Options) []error {
	if o.Topology == nil {
		return []error{errors.New("up: Options.Topology is nil; load one with LoadTopology")}
	}
	if err := o.Topology.Validate(); err != nil {
		return []error{err}
	}
	if o.Block == 0 {
		o.Block = DefaultBlock
	}
	var errs []error
	var missing []string
	for _, name := range []string{"causeway", "causeway-proxy", "demoapp"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, name)); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		if _, err := exec.LookPath("go"); err != nil {
			errs = append(errs, fmt.Errorf("binaries %v missing from %s and no go toolchain to build them: run `make build` where Go is installed, or pass --bin-dir", missing, o.BinDir))
		} else if _, err := findModule(); err != nil && o.SourceDir == "" {
			errs = append(errs, err)
		}
	}
	f := &Federation{o: o, top: o.Topology}
	f.pods = plan(f.top, f.net())
	if err := f.preflight(); err != nil {
		errs = append(errs, err)
	}
	return errs
}
