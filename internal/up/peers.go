package up

import (
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"sigs.k8s.io/yaml"

	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// peersFile is the file of cluster folders that holds the links.
const peersFile = "peers.yaml"

// peerObjects are cluster i's links to every other cluster: the same
// Peer objects (federation.causeway.dev/v1alpha1) a Kubernetes user
// applies, and `causeway link` prints, one document each.
func (f *Federation) peerObjects(i int) ([]byte, error) {
	var out []byte
	for j, peer := range f.top.Clusters {
		if j == i {
			continue
		}
		roots, err := os.ReadFile(f.clusterDir(peer.Name, "ca", trust.CACertFile))
		if err != nil {
			return nil, fmt.Errorf("up: cluster %s: the roots of peer %s: %w", f.top.Clusters[i].Name, peer.Name, err)
		}
		td := peer.Name + ".local"
		p := peerapi.Peer{Spec: peerapi.PeerSpec{
			Cluster: peer.Name, TrustDomain: td, Network: peer.Name,
			Federation: fmt.Sprintf("%s:%d", f.net().cpIP(j), portFederation),
			BundleEndpoint: &peerapi.BundleEndpoint{URL: fmt.Sprintf("https://%s:%d/", f.net().cpIP(j), portBundle),
				Profile: peerapi.ProfileHTTPSSPIFFE, SPIFFEID: bundles.ControlPlaneID(spiffeid.RequireTrustDomainFromString(td)).String()},
			TrustBundle: string(roots),
		}}
		p.APIVersion, p.Kind, p.Name = peerapi.APIVersion, peerapi.Kind, peer.Name
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("up: cluster %s: link to %s: %w", f.top.Clusters[i].Name, peer.Name, err)
		}
		b, err := yaml.Marshal(struct {
			APIVersion string           `json:"apiVersion"`
			Kind       string           `json:"kind"`
			Metadata   map[string]any   `json:"metadata"`
			Spec       peerapi.PeerSpec `json:"spec"`
		}{p.APIVersion, p.Kind, map[string]any{"name": p.Name}, p.Spec})
		if err != nil {
			return nil, err
		}
		out = append(append(out, "---\n"...), b...)
	}
	return out, nil
}

// writePeers writes cluster i's links into its folder (written then
// renamed: the folder source never reads half).
func (f *Federation) writePeers(i int, c ClusterSpec) error {
	b, err := f.peerObjects(i)
	if err != nil {
		return err
	}
	tmp := f.clusterDir(c.Name, "folder", "."+peersFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("up: cluster %s: links: %w", c.Name, err)
	}
	if err := os.Rename(tmp, f.clusterDir(c.Name, "folder", peersFile)); err != nil {
		return fmt.Errorf("up: cluster %s: links: %w", c.Name, err)
	}
	return nil
}
