package main

import (
	"strings"
	"testing"
)

// A worker advertises its data listener at --advertise with the --listen
// port, or with --advertise-port when given (a port mapping or a proxy in
// front of the listener).
func TestAdvertisedData(t *testing.T) {
	for _, c := range []struct {
		listen string
		port   int
		want   string
		err    string
	}{
		{":7071", 0, "10.0.0.5:7071", ""},
		{"0.0.0.0:7071", 30071, "10.0.0.5:30071", ""},
		{":7071", 65536, "", "--advertise-port 65536: not a port"},
		{":7071", -1, "", "--advertise-port -1: not a port"},
		{"7071", 30071, "", "--listen: address \"7071\""},
	} {
		got, err := advertisedData("10.0.0.5", c.listen, c.port)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("advertisedData(%q, %d) = %q, %v; want an error saying %q", c.listen, c.port, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("advertisedData(%q, %d) = %q, %v; want %q", c.listen, c.port, got, err, c.want)
		}
	}
}
