// mmdb-writer writes a MaxMind DB file for the tests (test/support/mmdb.ts builds and runs it):
// a small GeoIP2-City-shaped database, written by MaxMind's own writer library, so that the
// service's reader is tested against the real file format rather than against its own idea of it.
//
// Usage: mmdb-writer OUT.mmdb < networks.json
// where networks.json is {"database_type": "...", "networks": [{"network": "CIDR", "record": {...}}]}.
// JSON objects become MMDB maps, arrays slices, strings strings, numbers doubles (as GeoIP2's
// latitude and longitude are), booleans booleans.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

type input struct {
	DatabaseType string `json:"database_type"`
	Networks     []struct {
		Network string         `json:"network"`
		Record  map[string]any `json:"record"`
	} `json:"networks"`
}

func convert(v any) (mmdbtype.DataType, error) {
	switch x := v.(type) {
	case map[string]any:
		m := mmdbtype.Map{}
		for k, e := range x {
			c, err := convert(e)
			if err != nil {
				return nil, err
			}
			m[mmdbtype.String(k)] = c
		}
		return m, nil
	case []any:
		s := make(mmdbtype.Slice, 0, len(x))
		for _, e := range x {
			c, err := convert(e)
			if err != nil {
				return nil, err
			}
			s = append(s, c)
		}
		return s, nil
	case string:
		return mmdbtype.String(x), nil
	case float64:
		return mmdbtype.Float64(x), nil
	case bool:
		return mmdbtype.Bool(x), nil
	default:
		return nil, fmt.Errorf("unsupported JSON value %v", v)
	}
}

func run(out string) error {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("reading the networks: %w", err)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            in.DatabaseType,
		RecordSize:              28,
		IPVersion:               6,
		IncludeReservedNetworks: true, // the tests use documentation ranges (192.0.2.0/24, 2001:db8::/32)
	})
	if err != nil {
		return err
	}
	for _, n := range in.Networks {
		_, network, err := net.ParseCIDR(n.Network)
		if err != nil {
			return fmt.Errorf("network %q: %w", n.Network, err)
		}
		record, err := convert(n.Record)
		if err != nil {
			return fmt.Errorf("network %q: %w", n.Network, err)
		}
		if err := tree.Insert(network, record); err != nil {
			return fmt.Errorf("network %q: %w", n.Network, err)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mmdb-writer OUT.mmdb < networks.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mmdb-writer:", err)
		os.Exit(1)
	}
}
