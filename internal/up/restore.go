package up

import (
	"context"
	"fmt"
	"strings"
)

// unadvertiseDead marks not ready the endpoints of pods that were killed
// with their endpoints still advertised (KillProcesses), and waits until
// the client's sidecar no longer lists them; the caller holds f.mu.
//
// This is what Kubernetes does when it restarts a pod's containers: the
// pod is not ready until its probes pass again, so its endpoint leaves
// the ready set and comes back. It also matters to callers: a host that
// leaves the load assignment and comes back starts with a clean outlier
// record, instead of staying ejected for the rest of its ejection time
// (30s) after it is healthy again.
func (f *Federation) unadvertiseDead(ctx context.Context) error {
	var flipped []*Pod
	for _, p := range f.pods {
		if p.dead && p.ready {
			p.ready = false
			flipped = append(flipped, p)
		}
	}
	if len(flipped) == 0 {
		return nil
	}
	if err := f.writeFolders(flipped); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.ReadyTimeout)
	defer cancel()
	url := f.client.AdminURL() + "/clusters"
	return poll(ctx, fmt.Sprintf("%s client's sidecar (%s) to drop the killed pods' endpoints", f.client.Cluster, url), func() (bool, error) {
		code, _, body, err := httpGet(ctx, readyClient, url, "")
		if err != nil || code != 200 {
			return false, nil
		}
		for _, p := range flipped {
			if strings.Contains(body, `"`+p.IP+`:`) {
				return false, nil
			}
		}
		return true, nil
	})
}
