package caddymodule

import (
	"fmt"
	"strings"
)

// parseGunicornCmdArgs reads GUNICORN_CMD_ARGS as Gunicorn does (shell words, then its
// command-line flags) into setting name -> value: a string, true/false for switches, a
// []string for repeatable flags. Positional words are ignored, as by Gunicorn; a flag it
// does not know is skipped with a warning (with the word after it, when that is not a flag).
func parseGunicornCmdArgs(s string) (map[string]any, []string, error) {
	out := map[string]any{}
	if strings.TrimSpace(s) == "" {
		return out, nil, nil
	}
	words, err := shellWords(s)
	if err != nil {
		return nil, nil, fmt.Errorf("GUNICORN_CMD_ARGS: %w", err)
	}
	byFlag := map[string]gunicornSetting{}
	for _, st := range gunicornSettings {
		for _, f := range strings.Fields(st.cli) {
			byFlag[f] = st
		}
	}
	var warnings []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") || w == "-" {
			continue // APP and other positional words: Gunicorn ignores them here
		}
		if w == "--" {
			break
		}
		name, val, hasVal := strings.Cut(w, "=")
		if !hasVal && !strings.HasPrefix(w, "--") && len(w) > 2 {
			name, val, hasVal = w[:2], w[2:], true // -w4
		}
		st, ok := byFlag[name]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("%s (GUNICORN_CMD_ARGS): not a Gunicorn flag known here; ignored", name))
			if !hasVal && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
				i++
			}
			continue
		}
		switch st.kind {
		case gBool, gFalse:
			if hasVal {
				return nil, nil, fmt.Errorf("GUNICORN_CMD_ARGS: %s takes no value", name)
			}
			out[st.name] = st.kind == gBool
			continue
		}
		if !hasVal {
			if i+1 >= len(words) {
				return nil, nil, fmt.Errorf("GUNICORN_CMD_ARGS: %s needs a value", name)
			}
			i++
			val = words[i]
		}
		if st.kind == gList {
			prev, _ := out[st.name].([]string)
			out[st.name] = append(prev, val)
		} else {
			out[st.name] = val
		}
	}
	return out, warnings, nil
}

// shellWords splits s into words as a POSIX shell (and Python's shlex.split) does:
// blanks separate words, single quotes keep everything, double quotes keep all but \" \\ \$ \`,
// a backslash outside quotes escapes the next character.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					cur.WriteByte(s[i])
				}
			}
		case c == '\'':
			inWord = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
