package testcluster

import (
	"bytes"
	"embed"
	"os"
	"path"
	"runtime"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kwokStages are the Stage objects kwok v0.8.0 ships in its module
// (kustomize/stage/node/fast, node/heartbeat-with-lease, pod/fast), copied
// verbatim: kwok needs them passed through --config.
//
//go:embed kwokstages/*.yaml
var kwokStages embed.FS

// kwokNodeAnnotation marks the nodes kwok manages.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// writeKwokConfig writes the stages as one multi-document YAML file.
func writeKwokConfig(file string) error {
	entries, err := kwokStages.ReadDir("kwokstages")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, e := range entries {
		b, err := kwokStages.ReadFile(path.Join("kwokstages", e.Name()))
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(b)
		if !bytes.HasSuffix(b, []byte("\n")) {
			buf.WriteByte('\n')
		}
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

// kwokNode returns the Node object for n: managed by kwok, with the
// well-known hostname/os/arch and topology labels.
func kwokNode(n Node) *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     runtime.GOARCH,
		"type":                   "kwok",
	}
	if n.Region != "" {
		labels[corev1.LabelTopologyRegion] = n.Region
	}
	if n.Zone != "" {
		labels[corev1.LabelTopologyZone] = n.Zone
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		},
	}
}
