package up

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestStateFiles: the state is written to the work dir and the pointer
// file, read back by ReadState, and removed by Close's removeState, except
// a pointer another `causeway up` has since replaced.
func TestStateFiles(t *testing.T) {
	top := &Topology{Clusters: []ClusterSpec{{Name: "east"}, {Name: "west"}}}
	tests := []struct {
		name     string
		replaced bool
	}{{"ours", false}, {"replaced by another up", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ptr := filepath.Join(t.TempDir(), "causeway-up.json")
			f := &Federation{o: Options{WorkDir: dir, StateFile: ptr}, top: top}
			if err := f.writeState(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{ptr, filepath.Join(dir, "status.json")} {
				s, err := ReadState(p)
				if err != nil {
					t.Fatal(err)
				}
				if s.PID != os.Getpid() || s.WorkDir != dir || len(s.Clusters) != 2 ||
					s.Clusters[1].Name != "west" || s.Clusters[1].Admin != "http://127.10.2.1:15011" {
					t.Errorf("%s: %+v", p, s)
				}
			}
			if tt.replaced {
				if err := os.WriteFile(ptr, []byte(`{"pid": 1, "work_dir": "/other", "clusters": [{"name": "a", "admin": "http://x:1"}]}`), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f.removeState()
			if _, err := os.Stat(filepath.Join(dir, "status.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("work dir status.json: %v, want removed", err)
			}
			if _, err := os.Stat(ptr); errors.Is(err, os.ErrNotExist) == tt.replaced {
				t.Errorf("pointer: %v; want removed only if it was ours", err)
			}
		})
	}
}
