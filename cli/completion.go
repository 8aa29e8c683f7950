package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/client"
	"github.com/kumoi/kumoi/resource"
)

// Shell completion: every shell script below asks kumoi itself for the
// candidates of the word being completed (urfave/cli's
// --generate-bash-completion): the commands, verbs and flags, and — for
// the verbs that take an object's name — the names of the objects of that
// kind, read from the cluster (--addr, --token and their variables, as
// any command; nothing when it does not answer within a second).

const completionBash = `# kumoi completion for bash: source <(kumoi completion bash)
_kumoi_complete() {
	local cur opts
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	if [[ "$cur" == -* ]]; then
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	return 0
}
complete -o bashdefault -o default -F _kumoi_complete kumoi
`

const completionZsh = `#compdef kumoi
# kumoi completion for zsh: source <(kumoi completion zsh)
_kumoi() {
	local -a opts
	local cur=${words[-1]}
	if [[ "$cur" == -* ]]; then
		opts=("${(@f)$(${words[@]:0:#words[@]-1} "$cur" --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ "${opts[1]}" != "" ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
compdef _kumoi kumoi
`

const completionFish = `# kumoi completion for fish: kumoi completion fish > ~/.config/fish/completions/kumoi.fish
function __kumoi_complete
	set -l args (commandline -opc)
	set -l cur (commandline -ct)
	if string match -q -- '-*' $cur
		$args $cur --generate-bash-completion 2>/dev/null
	else
		$args --generate-bash-completion 2>/dev/null
	end
end
complete -c kumoi -f -a '(__kumoi_complete)'
`

func completionCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: commands, flags and object names",
		UsageText: "kumoi completion bash|zsh|fish",
		Description: `Prints a script that makes the shell complete kumoi's commands, verbs and
flags, and the names of VMs, hosts, networks, ... after the verbs that take
one (read from the cluster that --addr / KUMOI_ADDR names, with the token of
--token / KUMOI_TOKEN; nothing is offered when it does not answer within a
second).

   bash:  source <(kumoi completion bash)     # or save it in /etc/bash_completion.d/kumoi
   zsh:   source <(kumoi completion zsh)      # or save it as _kumoi in your $fpath
   fish:  kumoi completion fish > ~/.config/fish/completions/kumoi.fish`,
		Action: func(c *cli.Context) error {
			shell, err := oneName(c, "shell")
			if err != nil {
				return err
			}
			script := map[string]string{"bash": completionBash, "zsh": completionZsh, "fish": completionFish}[shell]
			if script == "" {
				return usagef("unknown shell %q: use bash, zsh or fish", shell)
			}
			_, err = fmt.Fprint(writer(c), script)
			return err
		},
	})
}

// nameVerbs are the verbs whose argument is an object's name.
var nameVerbs = map[string]bool{
	"get": true, "delete": true, "update": true, "start": true, "stop": true, "suspend": true, "resume": true,
	"reboot": true, "migrate": true, "drain": true, "enable": true, "vms": true, "attach": true, "detach": true,
	"resize": true, "apply": true, "disable": true,
}

// completeNames is the completion of a verb that takes an object of kind:
// the names of the objects (once none is given yet), then the flags.
func completeNames(kind resource.Kind) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		w := writer(c)
		if c.NArg() == 0 {
			if names := objectNames(c, kind); len(names) > 0 {
				for _, n := range names {
					fmt.Fprintln(w, n)
				}
				return
			}
		}
		cli.DefaultCompleteWithFlags(c.Command)(c)
	}
}

// objectNames lists the names of kind's objects, from local state (stale
// is fine for a completion), giving up after a second.
func objectNames(c *cli.Context, kind resource.Kind) []string {
	as, err := addrs(c)
	if err != nil {
		return nil
	}
	cfg, err := clientConfig(c, as)
	if err != nil {
		return nil
	}
	cfg.Timeout = time.Second
	cl, err := client.New(cfg)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Second)
	defer cancel()
	objs, _, err := cl.List(ctx, kind, &client.QueryOptions{Stale: true})
	if err != nil {
		return nil
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	return names
}

// enableCompletion turns completion on for the app and gives every
// name-taking verb under a kind's command its names.
func enableCompletion(app *cli.App) {
	app.EnableBashCompletion = true
	for _, cmd := range app.Commands {
		kind := resource.Kind(cmd.Name)
		if _, ok := resource.Lookup(kind); !ok {
			continue
		}
		for _, verb := range cmd.Subcommands {
			if nameVerbs[verb.Name] && verb.BashComplete == nil {
				verb.BashComplete = completeNames(kind)
			}
		}
	}
}
