package harness

import (
	"os"
	"strings"
)

// LoadAverage is the 1-minute load average from /proc/loadavg ("?" if it
// cannot be read): the machine is shared, and a benchmark's numbers only
// mean something next to it.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
