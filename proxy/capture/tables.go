package capture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	// ErrNoIptables means iptables-save or iptables-restore (ip6tables-* for
	// IPv6) is not installed.
	ErrNoIptables = errors.New("iptables not found")
	// ErrBadSave means iptables-save printed something that is not a nat
	// table dump.
	ErrBadSave = errors.New("unexpected iptables-save output")
)

// Tables installs and removes the rules through iptables-save and
// `iptables-restore --noflush`, which change the nat table in one atomic
// transaction and leave every chain not named CAUSEWAY_* as it was. The
// zero value runs the tools from $PATH in the caller's network namespace.
//
// Apply and Remove each read the table, compute the difference and write it;
// they are not safe against a concurrent writer of the same CAUSEWAY_*
// chains (there is one init step per pod).
type Tables struct {
	// Command returns the command that runs an iptables tool (name is
	// iptables-save, iptables-restore, ip6tables-save or ip6tables-restore).
	// Nil means exec.CommandContext(ctx, name, args...). Tests wrap the tool
	// in `ip netns exec`.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
}

// Result says what Apply or Remove did to one family's nat table.
type Result struct {
	Family  Family
	Changed bool   // false: the table already was as wanted; nothing was run
	Script  string // the iptables-restore input that was run ("" when unchanged)
	Rules   []string
}

// Apply validates c and installs its rules for IPv4 (and IPv6 when c.IPv6).
// Applying the same Config again changes nothing (Result.Changed is false);
// applying a different one replaces the CAUSEWAY_* chains' contents in one
// transaction, so no connection sees a half-installed rule set.
func (t *Tables) Apply(ctx context.Context, c Config) ([]Result, error) {
	c = c.clone()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var out []Result
	for _, f := range families(&c) {
		want := build(&c, f)
		cur, err := t.save(ctx, f)
		if err != nil {
			return out, err
		}
		script, changed := planApply(cur, want)
		res := Result{Family: f, Changed: changed, Rules: want.lines()}
		if changed {
			if err := t.restore(ctx, f, script); err != nil {
				return out, err
			}
			res.Script = script
		}
		out = append(out, res)
	}
	return out, nil
}

// Remove deletes every CAUSEWAY_* chain and every rule that jumps to one,
// for IPv4 (and IPv6 when c.IPv6), leaving the rest of the nat table as it
// was. Removing what is not there changes nothing.
func (t *Tables) Remove(ctx context.Context, c Config) ([]Result, error) {
	var out []Result
	for _, f := range families(&c) {
		cur, err := t.save(ctx, f)
		if err != nil {
			return out, err
		}
		script, changed := planRemove(cur)
		res := Result{Family: f, Changed: changed}
		if changed {
			if err := t.restore(ctx, f, script); err != nil {
				return out, err
			}
			res.Script = script
		}
		out = append(out, res)
	}
	return out, nil
}

func families(c *Config) []Family {
	if c.IPv6 {
		return []Family{IPv4, IPv6}
	}
	return []Family{IPv4}
}

func tool(f Family, verb string) string {
	if f == IPv6 {
		return "ip6tables-" + verb
	}
	return "iptables-" + verb
}

func (t *Tables) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	if t.Command != nil {
		return t.Command(ctx, name, args...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// run runs the tool with stdin and returns its stdout, or an error that
// carries its stderr and says what to fix.
func (t *Tables) run(ctx context.Context, name, stdin string, args ...string) ([]byte, error) {
	cmd := t.cmd(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w: install iptables (Debian: apt-get install iptables; Alpine: apk add iptables), or run with --dry-run to only print the rules", name, ErrNoIptables)
		}
		msg := strings.TrimSpace(stderr.String())
		hint := ""
		if strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Operation not permitted") {
			hint = " (run as root, or give the init container CAP_NET_ADMIN and CAP_NET_RAW)"
		}
		return nil, fmt.Errorf("%s %s: %w: %s%s", name, strings.Join(args, " "), err, msg, hint)
	}
	return stdout.Bytes(), nil
}

func (t *Tables) save(ctx context.Context, f Family) (natState, error) {
	out, err := t.run(ctx, tool(f, "save"), "", "-t", "nat")
	if err != nil {
		return natState{}, err
	}
	st, err := parseSave(out)
	if err != nil {
		return natState{}, fmt.Errorf("%s -t nat: %w", tool(f, "save"), err)
	}
	return st, nil
}

var restoreLine = regexp.MustCompile(`line (\d+) failed`)

func (t *Tables) restore(ctx context.Context, f Family, script string) error {
	_, err := t.run(ctx, tool(f, "restore"), script, "--noflush", "--wait")
	if err == nil {
		return nil
	}
	// Quote the line iptables-restore refused, so the error names the rule.
	if m := restoreLine.FindStringSubmatch(err.Error()); m != nil {
		if n, _ := strconv.Atoi(m[1]); n >= 1 {
			if lines := strings.Split(script, "\n"); n <= len(lines) {
				return fmt.Errorf("%w (the refused line is %q; does the kernel have the nat, owner and REDIRECT netfilter modules?)", err, lines[n-1])
			}
		}
	}
	return err
}

// natState is what iptables-save shows of this package's part of the nat
// table.
type natState struct {
	chains []string            // CAUSEWAY_* chains, in save order
	rules  map[string][]string // CAUSEWAY_* chain → "-A ..." lines
	jumps  []string            // "-A ..." lines of other chains that jump to ours
}

// parseSave reads `iptables-save -t nat` output. An empty output (nat table
// not loaded yet) is an empty state.
func parseSave(out []byte) (natState, error) {
	st := natState{rules: map[string][]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	inNat := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			if line != "*nat" {
				return natState{}, fmt.Errorf("%w: line %d: table %q, want *nat", ErrBadSave, n, line[1:])
			}
			inNat = true
		case line == "COMMIT":
			inNat = false
		case !inNat:
			return natState{}, fmt.Errorf("%w: line %d: %q outside a *nat ... COMMIT block", ErrBadSave, n, line)
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if ours(name) {
				st.chains = append(st.chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[3:], " ")
			switch {
			case ours(chain):
				st.rules[chain] = append(st.rules[chain], line)
			case jumpsToOurs(spec):
				st.jumps = append(st.jumps, line)
			}
		default:
			return natState{}, fmt.Errorf("%w: line %d: %q", ErrBadSave, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return natState{}, fmt.Errorf("%w: %v", ErrBadSave, err)
	}
	return st, nil
}

func jumpsToOurs(spec string) bool {
	f := strings.Fields(spec)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && ours(f[i+1]) {
			return true
		}
	}
	return false
}

// planApply returns the iptables-restore --noflush input that turns cur
// into want, and false if cur already is want.
//
// Declaring a chain in --noflush mode creates it, or flushes it if it
// exists; so the script declares every wanted chain and refills it, deletes
// unwanted or duplicate jumps, adds missing jumps, and deletes chains no
// longer wanted. iptables-restore commits it as one transaction.
func planApply(cur natState, want ruleset) (string, bool) {
	wantJumps := make([]string, len(want.jumps))
	for i, j := range want.jumps {
		wantJumps[i] = j.String()
	}
	if upToDate(cur, want, wantJumps) {
		return "", false
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	all := slices.Clone(want.chains)
	for _, ch := range cur.chains {
		if !slices.Contains(all, ch) {
			all = append(all, ch)
		}
	}
	slices.Sort(all)
	for _, ch := range all {
		fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
	}
	kept := map[string]bool{}
	for _, j := range cur.jumps {
		if slices.Contains(wantJumps, j) && !kept[j] {
			kept[j] = true
			continue
		}
		b.WriteString("-D" + strings.TrimPrefix(j, "-A") + "\n")
	}
	for _, r := range want.rules {
		b.WriteString(r.String() + "\n")
	}
	for _, j := range wantJumps {
		if !kept[j] {
			b.WriteString(j + "\n")
		}
	}
	for _, ch := range cur.chains {
		if !slices.Contains(want.chains, ch) {
			b.WriteString("-X " + ch + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String(), true
}

func upToDate(cur natState, want ruleset, wantJumps []string) bool {
	if !slices.Equal(cur.jumps, wantJumps) {
		return false
	}
	curChains := slices.Sorted(slices.Values(cur.chains))
	if !slices.Equal(curChains, want.chains) {
		return false
	}
	i := 0
	for _, ch := range want.chains {
		for _, line := range cur.rules[ch] {
			if i >= len(want.rules) || want.rules[i].String() != line {
				return false
			}
			i++
		}
	}
	return i == len(want.rules)
}

// planRemove returns the input that deletes our chains and every jump to
// them, and false if there are none.
func planRemove(cur natState) (string, bool) {
	if len(cur.chains) == 0 && len(cur.jumps) == 0 {
		return "", false
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	chains := slices.Sorted(slices.Values(cur.chains))
	for _, ch := range chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
	}
	for _, j := range cur.jumps {
		b.WriteString("-D" + strings.TrimPrefix(j, "-A") + "\n")
	}
	for _, ch := range chains {
		b.WriteString("-X " + ch + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String(), true
}
