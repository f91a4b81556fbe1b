package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// patchOp is one RFC 6902 operation. Only add, remove and replace are
// produced and applied.
type patchOp struct {
	Op    string
	Path  string
	Value any
}

func (o patchOp) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	return json.Marshal(struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}{o.Op, o.Path, o.Value})
}

// toJSONTree encodes v as JSON and decodes it into maps, slices, strings,
// bools, json.Numbers and nils.
func toJSONTree(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeJSONTree(b)
}

func decodeJSONTree(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// diffJSON returns the operations that turn a into b, both JSON trees.
// Objects are diffed member by member; arrays keep their common prefix and
// suffix, diff the middle element by element and add or remove the rest,
// so that elements the patch does not touch are never rewritten. Output is
// deterministic (members in sorted order).
func diffJSON(a, b any) []patchOp {
	var ops []patchOp
	diffAt("", a, b, &ops)
	return ops
}

func diffAt(path string, a, b any, ops *[]patchOp) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(av))
		for k := range av {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "/" + escapePointer(k)
			if bc, ok := bv[k]; ok {
				diffAt(p, av[k], bc, ops)
			} else {
				*ops = append(*ops, patchOp{Op: "remove", Path: p})
			}
		}
		keys = keys[:0]
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			*ops = append(*ops, patchOp{Op: "add", Path: path + "/" + escapePointer(k), Value: bv[k]})
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		pre := 0
		for pre < len(av) && pre < len(bv) && reflect.DeepEqual(av[pre], bv[pre]) {
			pre++
		}
		suf := 0
		for suf < len(av)-pre && suf < len(bv)-pre && reflect.DeepEqual(av[len(av)-1-suf], bv[len(bv)-1-suf]) {
			suf++
		}
		am, bm := av[pre:len(av)-suf], bv[pre:len(bv)-suf]
		n := min(len(am), len(bm))
		for i := range n {
			diffAt(path+"/"+strconv.Itoa(pre+i), am[i], bm[i], ops)
		}
		for i := len(am) - 1; i >= n; i-- { // from the back: indexes stay valid
			*ops = append(*ops, patchOp{Op: "remove", Path: path + "/" + strconv.Itoa(pre+i)})
		}
		for i := n; i < len(bm); i++ {
			*ops = append(*ops, patchOp{Op: "add", Path: path + "/" + strconv.Itoa(pre+i), Value: bm[i]})
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*ops = append(*ops, patchOp{Op: "replace", Path: path, Value: b})
	}
}

func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func unescapePointer(s string) string {
	if !strings.Contains(s, "~") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// applyPatch applies ops to doc (a JSON tree, modified in place where it
// can be) and returns the result. With createParents, an add whose parent
// objects are missing creates them as empty objects.
func applyPatch(doc any, ops []patchOp, createParents bool) (any, error) {
	for i, op := range ops {
		if op.Path != "" && !strings.HasPrefix(op.Path, "/") {
			return nil, fmt.Errorf("patch operation %d: path %q does not start with /", i, op.Path)
		}
		var toks []string
		if op.Path != "" {
			toks = strings.Split(op.Path[1:], "/")
			for j := range toks {
				toks[j] = unescapePointer(toks[j])
			}
		}
		var err error
		if doc, err = applyAt(doc, toks, op, createParents); err != nil {
			return nil, fmt.Errorf("patch operation %d (%s %s): %w", i, op.Op, op.Path, err)
		}
	}
	return doc, nil
}

func applyAt(node any, toks []string, op patchOp, createParents bool) (any, error) {
	if len(toks) == 0 {
		switch op.Op {
		case "add", "replace":
			return op.Value, nil
		}
		return nil, fmt.Errorf("cannot %s the whole document", op.Op)
	}
	tok, last := toks[0], len(toks) == 1
	switch n := node.(type) {
	case map[string]any:
		child, ok := n[tok]
		if last {
			switch op.Op {
			case "add":
				n[tok] = op.Value
			case "replace":
				if !ok {
					return nil, fmt.Errorf("member %q does not exist", tok)
				}
				n[tok] = op.Value
			case "remove":
				if !ok {
					return nil, fmt.Errorf("member %q does not exist", tok)
				}
				delete(n, tok)
			default:
				return nil, fmt.Errorf("unsupported operation %q", op.Op)
			}
			return n, nil
		}
		if !ok || child == nil {
			if !createParents || op.Op != "add" {
				return nil, fmt.Errorf("member %q does not exist", tok)
			}
			child = map[string]any{}
		}
		c, err := applyAt(child, toks[1:], op, createParents)
		if err != nil {
			return nil, err
		}
		n[tok] = c
		return n, nil
	case []any:
		var idx int
		if tok == "-" && last && op.Op == "add" {
			idx = len(n)
		} else {
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i > len(n) || (i == len(n) && !(last && op.Op == "add")) {
				return nil, fmt.Errorf("index %q out of range for an array of %d", tok, len(n))
			}
			idx = i
		}
		if !last {
			c, err := applyAt(n[idx], toks[1:], op, createParents)
			if err != nil {
				return nil, err
			}
			n[idx] = c
			return n, nil
		}
		switch op.Op {
		case "add":
			return append(n[:idx:idx], append([]any{op.Value}, n[idx:]...)...), nil
		case "replace":
			n[idx] = op.Value
			return n, nil
		case "remove":
			return append(n[:idx:idx], n[idx+1:]...), nil
		}
		return nil, fmt.Errorf("unsupported operation %q", op.Op)
	case nil:
		return nil, fmt.Errorf("parent of %q is null", tok)
	default:
		return nil, fmt.Errorf("parent of %q is a %T, not an object or array", tok, node)
	}
}
