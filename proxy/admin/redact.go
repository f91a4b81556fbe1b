package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Redacted replaces every redacted value.
const Redacted = "[redacted]"

// redactedTree marshals v to JSON and decodes it into a generic tree
// (numbers kept exact) with secrets replaced by Redacted.
func redactedTree(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %T as JSON: %w", v, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decoding JSON of %T: %w", v, err)
	}
	return redact(tree), nil
}

// redact walks a decoded JSON tree, replacing the value of every secret
// field and every string that holds a PEM private key.
func redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if secretField(k) && e != nil {
				t[k] = Redacted
				continue
			}
			t[k] = redact(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = redact(e)
		}
		return t
	case string:
		if strings.Contains(t, "PRIVATE KEY-----") {
			return Redacted
		}
		return t
	}
	return v
}

// secretField reports whether a field name denotes key material:
// private_key, privateKey, PrivateKey, private-key, key, Key, ...
func secretField(name string) bool {
	n := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(name))
	return n == "privatekey" || n == "key"
}
