//go:build tools

// Package tools pins modules that the tree imports so that `go mod tidy`
// keeps them while packages are being written.
package tools

import (
	_ "github.com/chzyer/readline"
	_ "github.com/google/uuid"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/urfave/cli/v2"
	_ "go.starlark.net/starlark"
	_ "go.starlark.net/syntax"
	_ "gonum.org/v1/plot"
	_ "gonum.org/v1/plot/plotter"
	_ "gonum.org/v1/plot/vg"
	_ "pgregory.net/rapid"
	_ "sigs.k8s.io/yaml"
)
