package demo

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWalkThroughFailsOverWithoutErrors runs the README's demo (shorter
// phases) and checks the table it prints: no request fails while
// localities go down, and traffic goes where the priorities say.
func TestWalkThroughFailsOverWithoutErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out strings.Builder
	res, err := Run(ctx, Options{Out: &out, Rate: 100, Phase: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(res) != 4 {
		t.Fatalf("got %d phases, want 4", len(res))
	}
	want := []string{"eu-west/eu-west-1a", "eu-west/eu-west-1b", "us-east/us-east-1a", ""}
	for i, ph := range res {
		if ph.Failed != 0 {
			t.Errorf("phase %q: %d of %d requests failed; failover must not drop requests", ph.Name, ph.Failed, ph.Requests)
		}
		if i < 3 && ph.ByLocality[want[i]] != ph.Requests {
			t.Errorf("phase %q: served by %v, want all by %s", ph.Name, ph.ByLocality, want[i])
		}
	}
	if got := res[3].ByLocality["eu-west/eu-west-1a"]; got == 0 {
		t.Errorf("after restore eu-west-1a served nothing (%v); traffic must come back", res[3].ByLocality)
	}
}
