package up

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is what a running `causeway up` tells `causeway status`: written
// to <work dir>/status.json and to the pointer file (StatePath) once its
// control planes are started, removed by Close.
type State struct {
	PID      int            `json:"pid"`
	WorkDir  string         `json:"work_dir"`
	Started  time.Time      `json:"started"`
	Clusters []StateCluster `json:"clusters"`
}

// StateCluster is one cluster's control plane.
type StateCluster struct {
	Name string `json:"name"`
	// Admin is the control plane's admin URL (http://127.10.<i>.1:15011).
	Admin string `json:"admin"`
	// Pods are the cluster's pods and their sidecars' admin URLs, for
	// `causeway explain --pod`.
	Pods []StatePod `json:"pods,omitempty"`
}

// StatePod is one pod of a `causeway up`.
type StatePod struct {
	Name string `json:"name"`
	Zone string `json:"zone"`
	// Admin is its sidecar's admin URL (http://127.20.<i>.<n>:15000).
	Admin string `json:"admin"`
}

// StatePath is the well-known pointer file of this user's `causeway up`:
// $XDG_RUNTIME_DIR/causeway-up.json, else <temp dir>/causeway-up-<uid>.json.
func StatePath() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "causeway-up.json")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("causeway-up-%d.json", os.Getuid()))
}

// ReadState reads a state file written by a `causeway up`.
func ReadState(path string) (State, error) {
	var s State
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w; remove it, it is not a `causeway up` state file", path, err)
	}
	if len(s.Clusters) == 0 {
		return s, fmt.Errorf("%s: lists no cluster; remove it, it is not a `causeway up` state file", path)
	}
	return s, nil
}

// state is f's State.
func (f *Federation) state() State {
	s := State{PID: os.Getpid(), WorkDir: f.o.WorkDir, Started: f.started.UTC()}
	for i, c := range f.top.Clusters {
		sc := StateCluster{Name: c.Name, Admin: fmt.Sprintf("http://%s:%d", f.net().cpIP(i), portAdmin)}
		for _, p := range f.pods {
			if p.Cluster == c.Name {
				sc.Pods = append(sc.Pods, StatePod{Name: p.Name, Zone: p.Zone, Admin: p.AdminURL()})
			}
		}
		s.Clusters = append(s.Clusters, sc)
	}
	return s
}

// writeState (caller owns f) writes <work dir>/status.json and the pointer file, each
// written then renamed so a reader never sees half.
func (f *Federation) writeState() error {
	b, err := json.MarshalIndent(f.state(), "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	paths := []string{filepath.Join(f.o.WorkDir, "status.json")}
	if f.o.StateFile != "-" {
		paths = append(paths, f.statePath())
	}
	for _, p := range paths {
		tmp := p + fmt.Sprintf(".%d.tmp", os.Getpid())
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return fmt.Errorf("up: state file: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("up: state file: %w", err)
		}
	}
	f.wroteState = true
	return nil
}

// removeState (caller holds f.mu) removes the pointer file if it is still this process's
// (another `causeway up` may have replaced it) and the work dir's copy.
func (f *Federation) removeState() {
	if !f.wroteState {
		return
	}
	f.wroteState = false
	_ = os.Remove(filepath.Join(f.o.WorkDir, "status.json"))
	if f.o.StateFile == "-" {
		return
	}
	p := f.statePath()
	if s, err := ReadState(p); err == nil && s.PID == os.Getpid() && s.WorkDir == f.o.WorkDir {
		_ = os.Remove(p)
	}
}

func (f *Federation) statePath() string {
	if f.o.StateFile != "" {
		return f.o.StateFile
	}
	return StatePath()
}

// statePathShown is the file `causeway status` reads.
func (f *Federation) statePathShown() string {
	if f.o.StateFile == "-" {
		return filepath.Join(f.o.WorkDir, "status.json") + " (causeway status --state)"
	}
	return f.statePath()
}
