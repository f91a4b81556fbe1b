package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ensureBinaries returns the three binaries in binDir, building the
// missing ones there from the source tree.
func ensureBinaries(ctx context.Context, binDir, srcDir string, out io.Writer) (binaries, error) {
	if binDir == "" {
		return binaries{}, errors.New("up: Options.BinDir is empty; name a directory for causeway, causeway-proxy and demoapp")
	}
	b := binaries{causeway: filepath.Join(binDir, "causeway"), proxy: filepath.Join(binDir, "causeway-proxy"), app: filepath.Join(binDir, "demoapp")}
	pkgs := map[string]string{b.causeway: "./cmd/causeway", b.proxy: "./cmd/causeway-proxy", b.app: "./internal/up/demoapp"}
	var missing []string
	for _, path := range []string{b.causeway, b.proxy, b.app} {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, pkgs[path])
		}
	}
	if len(missing) == 0 {
		return b, nil
	}
	if srcDir == "" {
		var err error
		if srcDir, err = findModule(); err != nil {
			return b, err
		}
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return b, fmt.Errorf("up: --bin-dir %s: %w", binDir, err)
	}
	fmt.Fprintf(out, "building %s into %s (once; later runs reuse them)\n", strings.Join(missing, " "), abs)
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", abs + string(filepath.Separator)}, missing...)...)
	cmd.Dir = srcDir
	if o, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("up: go build %s in %s: %w\n%s", strings.Join(missing, " "), srcDir, err, o)
	}
	return b, nil
}

// findModule walks up from the working directory to Causeway's go.mod.
func findModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/causewaymesh/causeway\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("up: binaries missing and no Causeway source tree above the working directory to build them; run from the repository or pass --bin-dir with causeway, causeway-proxy and demoapp (make build)")
		}
		dir = parent
	}
}
