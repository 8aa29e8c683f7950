package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kumoi/kumoi/resource"
)

// eventsCommand is 'kumoi events': the change stream, followed.
func eventsCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "events",
		Usage:     "follow the cluster's changes as they happen (GET /v1/events)",
		UsageText: "kumoi events [--kind KIND]... [--type TYPE]... [--name NAME] [-l SELECTOR] [--since INDEX] [-o json] [-t TEMPLATE]",
		Description: `Prints every change to the cluster's objects, one line each, as it is
committed, until Ctrl-C: TIME (when it was seen), INDEX (its Raft index),
TYPE (created, updated, deleted), KIND, NAME, and what the object is now (a
VM's phase and host, a host's state; the reason, if any). The stream
survives a controller's failure and resumes without a gap or a duplicate.

By default it starts with the next change; --since INDEX replays the
changes after INDEX that the controllers still keep (--since 0: all of
them; a "reset" line says when some are gone). --kind, --type and --name
keep only matching changes (--kind and --type repeat), -l those whose
object's labels match a selector. -o json prints each event as one JSON
line (NDJSON), -t each event through a template.

Examples:
   kumoi events
   kumoi events --kind vm --type deleted
   kumoi events --kind host -o json | jq -r '.object.status.state'
   kumoi events -l app=web -t '{{.index}} {{.name}} {{.object.status.phase}}{{"\n"}}'`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "kind", Usage: "only changes of objects of this `KIND` (vm, host, network, …); repeatable"},
			&cli.StringSliceFlag{Name: "type", Usage: "only changes of this `TYPE`: created, updated or deleted; repeatable"},
			&cli.StringFlag{Name: "name", Usage: "only changes of objects named `NAME`"},
			selectorFlag(),
			&cli.Int64Flag{Name: "since", Value: -1, Usage: "replay the changes after this Raft `INDEX` first (0: every change the controllers keep)"},
		},
		Action: followEvents,
	})
}

func followEvents(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	var kinds []resource.Kind
	for _, k := range c.StringSlice("kind") {
		if _, ok := resource.Lookup(resource.Kind(k)); !ok {
			return usagef("invalid --kind %q: use one of %s", k, strings.Join(kindNames(), ", "))
		}
		kinds = append(kinds, resource.Kind(k))
	}
	types := c.StringSlice("type")
	for _, t := range types {
		if err := checkChoice("type", t, resource.EventCreated, resource.EventUpdated, resource.EventDeleted); err != nil {
			return err
		}
	}
	sel, err := resource.ParseSelector(c.String("selector"))
	if err != nil {
		return usagef("invalid --selector: %v", err)
	}
	name := c.String("name")
	if outputFormat(c) == formatYAML {
		return usagef("kumoi events prints lines, JSON lines (-o json) or a template (-t), not YAML")
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	since := c.Int64("since")
	if since < 0 {
		st, err := s.client.Status(s.ctx)
		if err != nil {
			return s.fail(err)
		}
		since = int64(st.AppliedIndex)
	}
	w := writer(c)
	// The stream lasts until Ctrl-C: not bound by --timeout.
	for ev, err := range s.client.Events(c.Context, uint64(since), kinds...) {
		if err != nil {
			if c.Context.Err() != nil {
				return nil
			}
			return err
		}
		if ev.Type != resource.EventReset {
			if len(types) > 0 && !slices.Contains(types, ev.Type) || name != "" && ev.Name != name ||
				len(sel) > 0 && (ev.Object == nil || !sel.Matches(ev.Object.Labels)) {
				continue
			}
		}
		if t := c.String(flagTemplate); t != "" {
			if err := printTemplate(w, t, ev); err != nil {
				return err
			}
			continue
		}
		if outputFormat(c) == formatJSON {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(w, eventLine(ev)); err != nil {
			return err
		}
	}
	return nil
}

// eventLine is an event as one line of kumoi events.
func eventLine(ev resource.Event) string {
	at := time.Now().Format("15:04:05.000")
	if ev.Type == resource.EventReset {
		return fmt.Sprintf("%s %d reset: the controllers no longer keep the changes asked for; the stream goes on after index %d (re-list to catch up)", at, ev.Index, ev.Index)
	}
	what := ""
	if o := ev.Object; o != nil && ev.Type != resource.EventDeleted {
		switch o.Kind {
		case resource.KindVM:
			if _, st := resource.VMStateOf(o); st != nil {
				what = "phase=" + st.Phase
				if st.Host != "" {
					what += " host=" + st.Host
				}
				if st.Reason != "" {
					what += " reason=" + textCell(st.Reason)
				}
			}
		case resource.KindHost:
			if _, st := resource.HostStateOf(o); st != nil {
				what = "state=" + st.State
				if st.Reason != "" {
					what += " reason=" + textCell(st.Reason)
				}
			}
		}
	}
	line := fmt.Sprintf("%s %d %s %s %s", at, ev.Index, ev.Type, ev.Kind, ev.Name)
	if what != "" {
		line += " " + what
	}
	return line
}

// kindNames lists the kinds' names.
func kindNames() []string {
	var out []string
	for _, k := range resource.Kinds() {
		out = append(out, string(k.Kind))
	}
	return out
}
