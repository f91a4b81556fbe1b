package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Skipped is a workload Manifests left as it was, and why.
type Skipped struct {
	Document  int // 1-based position in the stream
	Kind      string
	Namespace string
	Name      string
	Reason    string
}

// templatePath returns the JSON pointer of the pod template of a workload
// kind ("" for a Pod itself); ok is false for kinds that are not workloads.
func templatePath(apiVersion, kind string) (path string, ok bool) {
	switch apiVersion + "/" + kind {
	case "v1/Pod":
		return "", true
	case "apps/v1/Deployment", "apps/v1/StatefulSet", "apps/v1/DaemonSet", "apps/v1/ReplicaSet",
		"batch/v1/Job", "v1/ReplicationController":
		return "/spec/template", true
	case "batch/v1/CronJob":
		return "/spec/jobTemplate/spec/template", true
	}
	return "", false
}

// Manifests copies the multi-document YAML stream r to w, injecting the pod
// templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
// CronJobs, ReplicationControllers and Pods. Namespaces are not known
// offline, so every workload is selected unless its pod template opts out
// (or uses hostNetwork, or is injected already). Every document that is not
// injected, separators and comments included, is copied byte for byte; an
// injected document is re-serialised (keys sorted, its comments dropped).
// An error names the document; nothing is written after it.
func Manifests(r io.Reader, w io.Writer, cfg Config) error {
	_, err := ManifestsReport(r, w, cfg)
	return err
}

// ManifestsReport is Manifests that also returns the workloads it did not
// inject and why.
func ManifestsReport(r io.Reader, w io.Writer, cfg Config) ([]Skipped, error) {
	in, err := newInjector(cfg)
	if err != nil {
		return nil, err
	}
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("inject: reading manifests: %w", err)
	}
	var skipped []Skipped
	docs := splitDocuments(src)
	for i, d := range docs {
		out, sk, err := in.document(d.body, i+1)
		if err != nil {
			return skipped, err
		}
		if sk != nil {
			skipped = append(skipped, *sk)
		}
		if _, err := w.Write(d.sep); err != nil {
			return skipped, fmt.Errorf("inject: writing manifests: %w", err)
		}
		if out == nil {
			out = d.body
		}
		if _, err := w.Write(out); err != nil {
			return skipped, fmt.Errorf("inject: writing manifests: %w", err)
		}
	}
	return skipped, nil
}

type yamlDoc struct {
	sep  []byte // the "---" line, with its line ending; empty for a first document without one
	body []byte
}

// splitDocuments splits a YAML stream at lines that are "---" alone (or
// followed by blanks or a comment). Concatenating sep and body of every
// document gives src back.
func splitDocuments(src []byte) []yamlDoc {
	var docs []yamlDoc
	cur := yamlDoc{}
	start := 0
	for off := 0; off < len(src); {
		end := bytes.IndexByte(src[off:], '\n')
		if end < 0 {
			end = len(src)
		} else {
			end += off + 1
		}
		line := src[off:end]
		if isSeparator(line) {
			cur.body = src[start:off]
			if off > 0 || len(cur.sep) > 0 {
				docs = append(docs, cur)
			}
			cur = yamlDoc{sep: line}
			start = end
		}
		off = end
	}
	cur.body = src[start:]
	if len(cur.sep) > 0 || len(cur.body) > 0 {
		docs = append(docs, cur)
	}
	return docs
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := strings.TrimSpace(string(line[3:]))
	if len(line) > 3 && line[3] != ' ' && line[3] != '\t' && line[3] != '\n' && line[3] != '\r' {
		return false // "----" or "---x" is content
	}
	return rest == "" || strings.HasPrefix(rest, "#")
}

// document injects one document's body. It returns nil output when the
// document stays as it is.
func (in *injector) document(body []byte, n int) ([]byte, *Skipped, error) {
	if isBlank(body) {
		return nil, nil, nil
	}
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(body, &head); err != nil {
		return nil, nil, fmt.Errorf("inject: manifests document %d: not valid YAML: %w", n, err)
	}
	tmplPath, ok := templatePath(head.APIVersion, head.Kind)
	if !ok {
		return nil, nil, nil
	}
	where := fmt.Sprintf("inject: manifests document %d (%s %s)", n, head.Kind, objName(head.Metadata.Namespace, head.Metadata.Name))
	js, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	doc, err := decodeJSONTree(js)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	tmplNode := lookupPointer(doc, tmplPath)
	if tmplNode == nil {
		return nil, nil, fmt.Errorf("%s: %s is missing; a %s needs a pod template", where, pointerField(tmplPath), head.Kind)
	}
	tb, err := json.Marshal(tmplNode)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal(tb, &tmpl); err != nil {
		return nil, nil, fmt.Errorf("%s: %s does not decode as a pod template: %w", where, pointerField(tmplPath), err)
	}
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	if pod.Namespace == "" {
		pod.Namespace = head.Metadata.Namespace
	}
	if pod.Name == "" {
		pod.Name = head.Metadata.Name
	}
	// Offline there is no namespace to read: every workload is selected.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace, Labels: map[string]string{LabelInject: NamespaceEnabled}}}
	out, d, err := in.pod(pod, ns)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	if d.code != "" {
		return nil, &Skipped{Document: n, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name, Reason: d.why}, nil
	}
	pod.Name, pod.Namespace = tmpl.Name, tmpl.Namespace
	out.Name, out.Namespace = tmpl.Name, tmpl.Namespace
	a, err := toJSONTree(pod)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	b, err := toJSONTree(out)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	ops := diffJSON(a, b)
	for i := range ops {
		ops[i].Path = tmplPath + ops[i].Path
	}
	if doc, err = applyPatch(doc, ops, true); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	js, err = json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	return y, nil, nil
}

func objName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// pointerField turns "/spec/template" into "spec.template".
func pointerField(p string) string {
	if p == "" {
		return "the document"
	}
	return strings.ReplaceAll(p[1:], "/", ".")
}

func lookupPointer(doc any, p string) any {
	if p == "" {
		return doc
	}
	for tok := range strings.SplitSeq(p[1:], "/") {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[tok]
	}
	return doc
}

// isBlank reports whether a document holds only blanks and comments.
func isBlank(b []byte) bool {
	for line := range bytes.Lines(b) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}
