//go:build linux

package integration

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Harness: Caddy's JSON log as the tests read it.

// logEntries returns the JSON log entries of caddy whose msg is msg.
func logEntries(c *Caddy, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(c.Logs(), "\n") {
		if !strings.Contains(l, msg) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitLogEntries waits until at least n entries with msg satisfy f.
func waitLogEntries(c *Caddy, msg string, n int, timeout time.Duration, f func(map[string]any) bool) []map[string]any {
	deadline := time.Now().Add(timeout)
	for {
		var got []map[string]any
		for _, e := range logEntries(c, msg) {
			if f == nil || f(e) {
				got = append(got, e)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func entryInt(e map[string]any, key string) int {
	switch v := e[key].(type) {
	case float64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

// entrySeconds reads a duration field: zap writes seconds as a number, or a Go duration string.
func entrySeconds(e map[string]any, key string) (float64, bool) {
	switch v := e[key].(type) {
	case float64:
		return v, true
	case string:
		if d, err := time.ParseDuration(v); err == nil {
			return d.Seconds(), true
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f, true
		}
	}
	return 0, false
}

func entryJSON(e map[string]any) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// logLinesMatching returns caddy log lines for which f is true.
func logLinesMatching(c *Caddy, f func(string) bool) []string {
	var out []string
	for _, l := range strings.Split(c.Logs(), "\n") {
		if f(l) {
			out = append(out, l)
		}
	}
	return out
}

// waitLogLine waits until a log line satisfies f.
func waitLogLine(c *Caddy, timeout time.Duration, f func(string) bool) []string {
	deadline := time.Now().Add(timeout)
	for {
		if m := logLinesMatching(c, f); len(m) > 0 || time.Now().After(deadline) {
			return m
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func isLevel(line string, levels ...string) bool {
	for _, l := range levels {
		if strings.Contains(line, `"level":"`+l+`"`) {
			return true
		}
	}
	return false
}
