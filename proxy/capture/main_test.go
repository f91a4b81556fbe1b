package capture

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperDialEnv makes the test binary a one-shot TCP client instead of
// running tests: it dials the address in the variable, prints the first
// line the server sends, and exits. The netns test runs it under the
// proxy's UID to show that UID's traffic is not captured.
const helperDialEnv = "CWCAP_HELPER_DIAL"

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperDialEnv); addr != "" {
		os.Exit(helperDial(addr))
	}
	goleak.VerifyTestMain(m)
}

func helperDial(addr string) int {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: read:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}
