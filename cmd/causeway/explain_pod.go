package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/causewaymesh/causeway/internal/up"
)

// podAdmin is the sidecar admin URL of pod ("name" or "cluster/name") in
// the `causeway up` whose state file is state.
func podAdmin(state, pod string) (string, error) {
	if _, err := upTargets(state); err != nil { // names a missing or dead `causeway up`
		return "", err
	}
	s, err := up.ReadState(state)
	if err != nil {
		return "", err
	}
	cluster, name, qualified := strings.Cut(pod, "/")
	if !qualified {
		cluster, name = "", pod
	}
	var found, all []string
	admin := ""
	for _, c := range s.Clusters {
		for _, p := range c.Pods {
			all = append(all, c.Name+"/"+p.Name)
			if p.Name == name && (cluster == "" || cluster == c.Name) {
				found = append(found, c.Name+"/"+p.Name)
				admin = p.Admin
			}
		}
	}
	switch len(found) {
	case 1:
		return admin, nil
	case 0:
		slices.Sort(all)
		if len(all) == 0 {
			return "", fmt.Errorf("--pod %q: the running `causeway up` lists no pods (an older version?); pass --admin", pod)
		}
		return "", fmt.Errorf("--pod %q: no such pod in the running `causeway up`; its pods: %s", pod, strings.Join(all, ", "))
	}
	return "", fmt.Errorf("--pod %q: in several clusters (%s); name one as cluster/name", pod, strings.Join(found, ", "))
}
