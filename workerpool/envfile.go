package workerpool

import (
	"fmt"
	"os"
	"strings"
)

// EnvFileVar is one variable of a dotenv file.
type EnvFileVar struct{ Key, Value string }

// LoadEnvFiles reads dotenv files in order (a later file overrides an earlier one's
// variable). An error names the file and the line.
func LoadEnvFiles(paths []string) ([]EnvFileVar, error) {
	var vars []EnvFileVar
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("env_file: %w", err)
		}
		more, err := ParseEnvFile(string(data))
		if err != nil {
			return nil, fmt.Errorf("env_file %s: %w", path, err)
		}
		vars = append(vars, more...)
	}
	return vars, nil
}

// ParseEnvFile parses dotenv text, the format Docker Compose, python-dotenv and Granian
// read: `KEY=VALUE` lines, an optional `export ` prefix, blank lines and `#` comments.
// A value is unquoted (trimmed; ` #` starts a comment), 'single-quoted' (literal) or
// "double-quoted" (the escapes \n \r \t \" \\ and \$); quoted values may span lines.
// Nothing is interpolated: `$` is a plain character.
func ParseEnvFile(text string) ([]EnvFileVar, error) {
	text = strings.TrimPrefix(text, "\ufeff")
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var vars []EnvFileVar
	for i := 0; i < len(lines); i++ {
		start := i + 1 // line number, for errors
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimSpace(rest)
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok {
			return nil, fmt.Errorf("line %d: expected KEY=VALUE, got %q", start, line)
		}
		if !validEnvKey(key) {
			return nil, fmt.Errorf("line %d: %q is not a variable name (letters, digits and _, not starting with a digit)", start, key)
		}
		value = strings.TrimLeft(value, " \t")
		var err error
		if value != "" && (value[0] == '"' || value[0] == '\'') {
			value, i, err = quotedValue(lines, i, value)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s %w", start, key, err)
			}
		} else {
			if j := strings.Index(value, " #"); j >= 0 {
				value = value[:j]
			} else if j := strings.Index(value, "\t#"); j >= 0 {
				value = value[:j]
			}
			value = strings.TrimSpace(value)
		}
		if strings.IndexByte(value, 0) >= 0 {
			return nil, fmt.Errorf("line %d: the value of %s holds a NUL byte", start, key)
		}
		vars = append(vars, EnvFileVar{key, value})
	}
	return vars, nil
}

// quotedValue reads a quoted value that starts in lines[i] (value is what follows the
// `=`), up to its closing quote, perhaps lines later. It returns the value and the index
// of the line the value ends on.
func quotedValue(lines []string, i int, value string) (string, int, error) {
	quote := value[0]
	rest := value[1:]
	var b strings.Builder
	for {
		for j := 0; j < len(rest); j++ {
			c := rest[j]
			switch {
			case c == quote:
				tail := strings.TrimSpace(rest[j+1:])
				if tail != "" && tail[0] != '#' {
					return "", i, fmt.Errorf("has %q after its closing quote", tail)
				}
				return b.String(), i, nil
			case c == '\\' && quote == '"' && j+1 < len(rest):
				j++
				switch e := rest[j]; e {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				case 't':
					b.WriteByte('\t')
				case '"', '\\', '$':
					b.WriteByte(e)
				default: // unknown escapes stay as written
					b.WriteByte('\\')
					b.WriteByte(e)
				}
			default:
				b.WriteByte(c)
			}
		}
		i++
		if i >= len(lines) {
			return "", i, fmt.Errorf("has no closing %c", quote)
		}
		b.WriteByte('\n')
		rest = lines[i]
	}
}

func validEnvKey(key string) bool {
	if key == "" || (key[0] >= '0' && key[0] <= '9') {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// spawnEnv is the environment of a worker (or zygote) starting now: workerEnv, with the
// env files read anew (a restart picks up their edits) between the inherited variables
// and Env, which overrides them.
func (p *Pool) spawnEnv() ([]string, error) {
	if len(p.cfg.EnvFiles) == 0 {
		return p.env, nil
	}
	vars, err := LoadEnvFiles(p.cfg.EnvFiles)
	if err != nil {
		return nil, err
	}
	noEnv := p.cfg
	noEnv.Env = nil
	env := workerEnv(noEnv)
	for _, v := range vars {
		env = setEnv(env, v.Key, v.Value)
	}
	for k, v := range p.cfg.Env {
		env = setEnv(env, k, v)
	}
	return env, nil
}
