#!/usr/bin/env python3
"""Regenerates table.rs: renders every case below with Prometheus's own template engine
(`promtool test rules` of Prometheus 2.42) and records the output.

Each case becomes alert rule `__alert_A<i>` over a series m{<labels>, case="<i>"} with
the given value; promtool prints the annotation it got when it differs from a sentinel.
Templates that fail to parse make promtool refuse the file; they are recorded as
`PARSE: <message>` and run again without them.

Usage: python3 regen.py  (needs promtool on PATH; writes table.rs next to this file)
"""
import ast
import json
import os
import re
import subprocess
import tempfile

EXTRA_SERIES = [{"series": 'q{instance="b"}', "values": "21"}, {"series": 'q{instance="a"}', "values": "11"}]

GROUPS = {
    "c1": [
        {"t": "{{ 1\n}}", "v": "1234567"},
        {"t": "{{$x=1}}{{$x}}", "v": "1234567"},
        {"t": "{{ $x := 1 }}{{ $x = 2 }}{{$x}}", "v": "1234567"},
        {"t": "{{", "v": "1234567"},
        {"t": "{{ foo }}", "v": "1234567"},
        {"t": "{{ $y }}", "v": "1234567"},
        {"t": "{{ if 1 }}x", "v": "1234567"},
        {"t": "{{ end }}", "v": "1234567"},
        {"t": "{{ else }}", "v": "1234567"},
        {"t": "{{ printf \"%d\" $value }}", "v": "1234567"},
        {"t": "{{ printf \"%.2f %5.1f|%-6s|%q %x %v %s\" 1.005 2.25 \"ab\" \"a\\\"b\" \"hi\" 1e21 true }}", "v": "1234567"},
        {"t": "{{ gt $value 1 }}", "v": "1234567"},
        {"t": "{{ title $value }}", "v": "1234567"},
        {"t": "{{ $value | title }}", "v": "1234567"},
        {"t": "{{ 1 2 }}", "v": "1234567"},
        {"t": "{{ nil }}", "v": "1234567"},
        {"t": "{{ .Labels.instance.x }}", "v": "1234567"},
        {"t": "{{ template \"x\" }}", "v": "1234567"},
        {"t": "{{ humanize }}", "v": "1234567"},
        {"t": "{{ printf \"%.0f %.0f %.0f %.1f\" 0.5 1.5 2.5 0.25 }}", "v": "1234567"},
        {"t": "{{ print 1 2 \"a\" 3 nil }}", "v": "1234567"},
        {"t": "{{ println 1 \"a\" }}", "v": "1234567"},
        {"t": "{{ html \"<a href='x'>&\\\"\" }}", "v": "1234567"},
        {"t": "{{ js \"<a href='x'>&\\\"=\\n\" }}", "v": "1234567"},
        {"t": "{{ urlquery \"a b&c=d/é\" }}", "v": "1234567"},
        {"t": "{{ len $labels }} {{ index $labels \"job\" }} {{ index $labels \"nope\" }}|{{ slice \"abcdef\" 1 3 }}", "v": "1234567"},
        {"t": "{{ eq 1 1 2 }} {{ eq \"a\" \"b\" }} {{ lt 1 2 }} {{ ne 1 2 }} {{ and 1 0 2 }} {{ or 0 \"\" 3 }} {{ not 0 }}", "v": "1234567"},
        {"t": "{{ 1.0 }} {{ 1e3 }} {{ 0x10 }} {{ 010 }} {{ 'a' }} {{ -0 }} {{ 1_000 }} {{ 0b101 }}", "v": "1234567"},
        {"t": "{{ $labels.instance }} {{ $labels.job }}", "v": "1234567"},
        {"t": "{{ .Labels.instance }}", "v": "1234567"},
        {"t": "{{ $value }}", "v": "1234567"},
        {"t": "{{ humanize $value }}", "v": "1234567"},
        {"t": "{{ $externalURL }}|{{ $externalLabels }}|{{ externalURL }}|{{ pathPrefix }}", "v": "1234567"},
        {"t": "{{ range $k, $v := $labels }}{{$k}}={{$v}},{{ end }}", "v": "1234567"},
        {"t": "{{ range $labels }}{{.}};{{else}}none{{end}}", "v": "1234567"},
        {"t": "{{ range $k := $labels }}{{$k}};{{end}}", "v": "1234567"},
        {"t": "{{ with $labels.nope }}x{{else}}empty{{end}}", "v": "1234567"},
        {"t": "{{ with $labels.job }}[{{.}}]{{end}}", "v": "1234567"},
        {"t": "{{ if gt $value 1000.0 }}big{{ else if gt $value 10.0 }}mid{{ else }}small{{ end }}", "v": "1234567"},
        {"t": "a  {{- \"x\" -}}  b", "v": "1234567"},
        {"t": "{{/* comment */}}c {{- /* c2 */ -}} d", "v": "1234567"},
        {"t": "{{ \"a\" | printf \"%s-%s\" \"b\" }}", "v": "1234567"},
        {"t": "{{ printf \"%.2f\" $value }} {{ printf \"%d\" 3 }} {{ printf \"%5s|%-5s|\" \"ab\" \"cd\" }}", "v": "1234567"},
        {"t": "{{ $value | humanizePercentage }} {{ humanizeDuration 3661 }} {{ humanizeDuration 0.5 }} {{ humanize1024 1048576 }}", "v": "1234567"},
        {"t": "{{ humanizeTimestamp 1435065584.128 }} {{ (toTime 1435065584.128).Format \"2006-01-02\" }} {{ toTime 0 }}", "v": "1234567"},
        {"t": "{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }} {{ reReplaceAll \":.*\" \"\" $labels.instance }} {{ match \"a+\" \"aa\" }}", "v": "1234567"},
        {"t": "{{ title \"aa bb CC\" }} {{ toUpper \"aa\" }} {{ toLower \"AA\" }} {{ \"x.y:1\" | stripPort }} {{ \"x.y:1\" | stripDomain }}", "v": "1234567"},
        {"t": "{{ graphLink \"rate(x[5m]) > 1\" }} {{ tableLink \"up\" }} {{ safeHtml \"<b>\" }}", "v": "1234567"},
        {"t": "{{ parseDuration \"1h2m10ms\" }} {{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}", "v": "1234567"},
        {"t": "{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}", "v": "1234567"},
        {"t": "{{ template \"y\" . }}{{ define \"y\" }}Y:{{ .Value }}{{ end }}", "v": "1234567"},
        {"t": "{{ block \"b\" $labels }}B:{{ .job }}{{ end }}", "v": "1234567"},
        {"t": "{{ len \"héllo\" }} {{ index \"abc\" 1 }} {{ slice $labels.instance 0 1 }}", "v": "1234567"},
        {"t": "{{ print $value \"x\" 1.5 true nil }}", "v": "1234567"},
        {"t": "{{ printf \"%v %T %q %x\" $labels $value 65 255 }}", "v": "1234567"},
        {"t": "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}", "v": "1234567"},
        {"t": "{{ range $i, $e := $labels }}{{ if eq $i \"job\" }}{{ break }}{{ end }}{{ $i }};{{ end }}", "v": "1234567"},
        {"t": "{{ range $labels }}{{ if eq . \"j\" }}{{ continue }}{{ end }}{{ . }};{{ end }}", "v": "1234567"},
        {"t": "{{ and 1 2 }} {{ and 0 2 }} {{ or \"\" \"b\" }} {{ not true }} {{ and }}", "v": "1234567"},
        {"t": "{{ eq $labels.job \"j\" \"k\" }} {{ ne 1 2 }} {{ lt \"a\" \"b\" }} {{ le 1.5 1.5 }} {{ ge 2 1 }} {{ lt true false }}", "v": "1234567"},
        {"t": "{{ $value.Foo }}", "v": "1234567"},
        {"t": "{{ $labels.job.Foo }}", "v": "1234567"},
        {"t": "{{ .Labels.job 1 }}", "v": "1234567"},
        {"t": "{{ $labels 1 }}", "v": "1234567"},
        {"t": "{{ .Value 1 }}", "v": "1234567"},
        {"t": "{{ query \"1.5\" | first | value }}", "v": "1234567"},
        {"t": "{{ \"x\" | query }}", "v": "1234567"},
        {"t": "{{ printf }}", "v": "1234567"},
        {"t": "{{ printf 1 }}", "v": "1234567"},
        {"t": "{{ humanize true }}", "v": "1234567"},
        {"t": "{{ humanize \"\" }}", "v": "1234567"},
        {"t": "{{ index $labels 1 }}", "v": "1234567"},
        {"t": "{{ index 1 1 }}", "v": "1234567"},
        {"t": "{{ index nil 1 }}", "v": "1234567"},
        {"t": "{{ len 3 }}", "v": "1234567"},
        {"t": "{{ len nil }}", "v": "1234567"},
        {"t": "{{ slice \"abc\" 2 1 }}", "v": "1234567"},
        {"t": "{{ range 5 }}x{{ end }}", "v": "1234567"},
        {"t": "{{ range \"abc\" }}x{{ end }}", "v": "1234567"},
        {"t": "{{ (1) }}", "v": "1234567"},
        {"t": "{{ 1 | printf \"%d\" }}", "v": "1234567"},
        {"t": "{{ \"a\" | \"b\" }}", "v": "1234567"},
        {"t": "{{ if }}", "v": "1234567"},
        {"t": "{{ range $a, $b, $c := . }}{{ end }}", "v": "1234567"},
        {"t": "{{ $x, $y := 1 }}", "v": "1234567"},
        {"t": "{{ define \"a\" }}{{ end }}{{ define \"a\" }}x{{ end }}", "v": "1234567"},
        {"t": "{{ template \"a\" }}{{ define \"a\" }}{{ template \"a\" }}{{ end }}", "v": "1234567"},
        {"t": "{{ 1.5.x }}", "v": "1234567"},
        {"t": "{{ .Labels.x.y.z }}", "v": "1234567"},
        {"t": "{{ \"\\z\" }}", "v": "1234567"},
        {"t": "{{ 'ab' }}", "v": "1234567"},
        {"t": "{{ 99999999999999999999 }}", "v": "1234567"},
        {"t": "{{ 18446744073709551615 }}", "v": "1234567"},
        {"t": "{{ 1i }}", "v": "1234567"},
        {"t": "{{ range . }}{{ end }}", "v": "1234567"},
        {"t": "{{ with . }}{{ .Value }}{{ end }}", "v": "1234567"},
        {"t": "{{ . }}", "v": "1234567"},
        {"t": "{{ $ }}", "v": "1234567"},
        {"t": "{{ $.Value }}", "v": "1234567"},
        {"t": "{{ js \"`x`\" }} {{ html 1 2 }} {{ urlquery nil }} {{ js nil }}", "v": "1234567"},
        {"t": "{{ printf \"%s\" nil }} {{ printf \"%d\" nil }} {{ printf \"%v\" nil }} {{ printf \"%x\" 1.5 }}", "v": "1234567"},
        {"t": "{{ printf \"%6.2f|%-8.3e|%+d|% d|%08.3f|%x|%X|%o|%b|%c|%U|%q\" 3.14159 1234.5 5 5 -3.14159 \"hi\" 255 8 5 65 65 \"x\" }}", "v": "1234567"},
        {"t": "{{ printf \"%t %v %s\" true false \"s\" }} {{ printf \"%!\" }} {{ printf \"%\" }} {{ printf \"%d %d\" 1 }} {{ printf \"%d\" 1 2 }}", "v": "1234567"},
        {"t": "{{ printf \"%10.4v|%-10v|%010d|%+.2e|%g|%G|%.3g\" 3.14159 \"x\" -42 12345.678 0.000012345 1e21 123456 }}", "v": "1234567"},
        {"t": "{{ printf \"%5t|%-5t|%05s|%.2s|%x\" true false \"ab\" \"abcdef\" \"héllo\" }}", "v": "1234567"},
        {"t": "{{ printf \"%*d|%-*d|%.*f\" 5 1 4 2 2 3.14159 }}", "v": "1234567"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "0"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "0"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "0.1"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "0.1"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1.5"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1.5"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "100"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "100"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "123456"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "123456"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1000000"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1000000"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1234567"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1234567"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "123456789"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "123456789"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "0.0001"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "0.0001"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "0.00001"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "0.00001"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1e21"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1e21"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1e20"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1e20"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "-2.5"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "-2.5"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "NaN"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "NaN"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "Inf"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "Inf"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "-Inf"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "-Inf"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "0.000123"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "0.000123"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "33.333333333333336"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "33.333333333333336"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "99.95"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "99.95"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1e-300"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1e-300"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "5e-324"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "5e-324"},
        {"t": "{{ $value }}|{{ humanize $value }}|{{ humanize1024 $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ printf \"%.2f %e %g %.3g %8.1f\" $value $value $value $value $value }}", "v": "1.7976931348623157e308"},
        {"t": "{{ humanizeTimestamp $value }}", "v": "1.7976931348623157e308"},
    ],
    "c2": [
        {"t": "line1\n{{ .Foo }}", "v": "2.5"},
        {"t": "a\nb\n  {{ $labels.job.x }}", "v": "2.5"},
        {"t": "{{ humanize \"x\" |\n printf \"%s\" }}", "v": "2.5"},
        {"t": "x\n{{ if }}", "v": "2.5"},
        {"t": "x\n{{ end }}\n", "v": "2.5"},
        {"t": "{{ if 1 }}\n\n{{ else }}\n{{ end", "v": "2.5"},
        {"t": "{{ printf \"%s %s %s %s %s %s %s %s\" \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" \"b\" \"c\" \"d\" \"e\" \"f\" \"g\" 1 | humanize }}", "v": "2.5"},
        {"t": "{{ 1\n+ 2 }}", "v": "2.5"},
        {"t": "{{ \"a\nb\" }}", "v": "2.5"},
        {"t": "{{ `a\nb` }}\n{{ .Foo }}", "v": "2.5"},
        {"t": "{{/* a\nb */}}{{ .Foo }}", "v": "2.5"},
        {"t": "{{- /* x */ -}}", "v": "2.5"},
        {"t": "{{ /* x */ }}", "v": "2.5"},
        {"t": "{{define \"t\"}}{{ $labels }}{{end}}", "v": "2.5"},
        {"t": "{{define \"t\"}}{{ .X }}{{end}}{{ template \"t\" $labels }}", "v": "2.5"},
        {"t": "{{define \"t\"}}{{ .x.y }}{{end}}{{ template \"t\" $labels }}", "v": "2.5"},
        {"t": "{{ range $i, $e := query \"q\" }}{{$i}}:{{$e.Value}}{{end}}", "v": "2.5"},
        {"t": "{{ with $x := 5 }}{{$x}}{{end}}", "v": "2.5"},
        {"t": "{{ $labels.instance | reReplaceAll \"(.*):(.*)\" \"$2-$1\" }}", "v": "2.5"},
        {"t": "{{ reReplaceAll \"(\" \"\" \"x\" }}", "v": "2.5"},
        {"t": "{{ match \"(\" \"x\" }}", "v": "2.5"},
        {"t": "{{ reReplaceAll \"a*\" \"-\" \"baaac\" }}", "v": "2.5"},
        {"t": "{{ reReplaceAll \"(?P<x>b)\" \"${x}$x$1x$$\" \"abc\" }}", "v": "2.5"},
        {"t": "{{ \"héllo wörld\" | title }} {{ \"ǆ\" | toUpper }} {{ \"ß\" | toUpper }}", "v": "2.5"},
        {"t": "{{ printf \"%q\" \"é\\x00\\u200b\" }} {{ printf \"%+q\" \"é\" }} {{ printf \"%#q\" \"a\" }}", "v": "2.5"},
        {"t": "{{ 0x1F }} {{ 1e2 }} {{ -1.50 }} {{ +3 }} {{ .5 }} {{ 1_0.5 }} {{ 0x1p4 }} {{ 0o17 }}", "v": "2.5"},
        {"t": "{{ \"\\u00e9\\t\\x41\\101\" }}", "v": "2.5"},
        {"t": "{{ '\\n' }} {{ '\\'' }} {{ 'é' }}", "v": "2.5"},
        {"t": "{{ print 1.0 2.5 }} {{ print \"a\" \"b\" }} {{ print true 1 }} {{ println }} x", "v": "2.5"},
        {"t": "{{ eq 1 1.0 }}", "v": "2.5"},
        {"t": "{{ eq $labels $labels }}", "v": "2.5"},
        {"t": "{{ eq nil nil }}", "v": "2.5"},
        {"t": "{{ eq .Foo 1 }}", "v": "2.5"},
        {"t": "{{ lt 1 }}", "v": "2.5"},
        {"t": "{{ eq 1 }}", "v": "2.5"},
        {"t": "{{ $labels | len }} {{ len $labels.job }} {{ index $labels \"job\" | len }}", "v": "2.5"},
        {"t": "{{ $x := \"a\" }}{{ range $labels }}{{ $x = . }}{{ end }}{{ $x }}", "v": "2.5"},
        {"t": "{{ if and (gt $value 1.0) (lt $value 1e9) }}in{{ end }}", "v": "2.5"},
        {"t": "{{ if or (eq $labels.job \"x\") (eq $labels.job \"j\") }}yes{{ end }}", "v": "2.5"},
        {"t": "{{ not }}", "v": "2.5"},
        {"t": "{{ .Labels.instance | stripPort | toUpper }}", "v": "2.5"},
        {"t": "{{ $value | printf \"%.1f\" | printf \"[%s]\" }}", "v": "2.5"},
        {"t": "{{ \"1234567\" | humanize }} {{ \"1e3\" | humanize1024 }} {{ 3600 | humanizeDuration }} {{ \"0.5\" | humanizePercentage }}", "v": "2.5"},
        {"t": "{{ toTime \"x\" }}", "v": "2.5"},
        {"t": "{{ (toTime 1657155181).Unix }} {{ (toTime 1657155181.5).UnixMilli }} {{ (toTime 1657155181).Format \"Mon Jan 2 15:04:05 MST 2006\" }}", "v": "2.5"},
        {"t": "{{ (toTime 1657155181).Foo }}", "v": "2.5"},
        {"t": "{{ toTime 1 | printf \"%v|%s|%T\" }}", "v": "2.5"},
        {"t": "{{ humanizeTimestamp -1.5 }} {{ humanizeTimestamp 0.0015 }}", "v": "2.5"},
        {"t": "{{ parseDuration \"\" }}", "v": "2.5"},
        {"t": "{{ parseDuration \"1x\" }}", "v": "2.5"},
        {"t": "{{ parseDuration \"1d12h\" }} {{ parseDuration \"1.5h\" }}", "v": "2.5"},
        {"t": "{{ parseDuration \"300y\" }}", "v": "2.5"},
        {"t": "{{ first \"x\" }}", "v": "2.5"},
        {"t": "{{ label \"a\" \"b\" }}", "v": "2.5"},
        {"t": "{{ value nil }}", "v": "2.5"},
        {"t": "{{ label \"a\" nil }}", "v": "2.5"},
        {"t": "{{ first nil }}", "v": "2.5"},
        {"t": "{{ sortByLabel \"x\" nil }}", "v": "2.5"},
        {"t": "{{ safeHtml \"<a>\" | toUpper }}", "v": "2.5"},
        {"t": "{{ safeHtml \"<a>\" | printf \"%s\" }} {{ len (safeHtml \"ab\") }} {{ eq (safeHtml \"a\") \"a\" }}", "v": "2.5"},
        {"t": "{{ args }}", "v": "2.5"},
        {"t": "{{ (args 1 2).arg1 }} {{ (args 1).arg5 }} {{ index (args 1) \"arg0\" }}", "v": "2.5"},
        {"t": "{{ template \"x\" }}{{ define \"x\" }}{{ $ }}{{ end }}", "v": "2.5"},
        {"t": "{{ if true }}{{ define \"x\" }}{{ end }}{{ end }}", "v": "2.5"},
        {"t": "{{ break }}", "v": "2.5"},
        {"t": "{{ range $labels }}{{ break 1 }}{{ end }}", "v": "2.5"},
        {"t": "{{ range $labels }}{{ continue }}{{ end }}done", "v": "2.5"},
        {"t": "{{ else }}", "v": "2.5"},
        {"t": "{{ if 1 }}{{ else }}{{ else }}{{ end }}", "v": "2.5"},
        {"t": "{{ with 1 }}{{ else if 1 }}{{ end }}", "v": "2.5"},
        {"t": "{{ range 1 }}{{ else }}{{ end }}", "v": "2.5"},
        {"t": "{{ $x }}", "v": "2.5"},
        {"t": "{{ $x := 1 }}{{ $x := 2 }}{{ $x }}", "v": "2.5"},
        {"t": "{{ if true }}{{ $z := 1 }}{{ end }}{{ $z }}", "v": "2.5"},
        {"t": "{{ (1 }}", "v": "2.5"},
        {"t": "{{ 1) }}", "v": "2.5"},
        {"t": "{{ ) }}", "v": "2.5"},
        {"t": "{{ .x| }}", "v": "2.5"},
        {"t": "{{ | }}", "v": "2.5"},
        {"t": "{{ .a.b c }}", "v": "2.5"},
        {"t": "{{ \"a\".b }}", "v": "2.5"},
        {"t": "{{ nil.x }}", "v": "2.5"},
        {"t": "{{ (nil).x }}", "v": "2.5"},
        {"t": "{{ $.x.y }}", "v": "2.5"},
        {"t": "{{ ... }}", "v": "2.5"},
        {"t": "{{ .1 }}", "v": "2.5"},
        {"t": "{{ a-b }}", "v": "2.5"},
        {"t": "{{ $a-b }}", "v": "2.5"},
        {"t": "{{ 1a }}", "v": "2.5"},
        {"t": "{{ @ }}", "v": "2.5"},
        {"t": "{{ # }}", "v": "2.5"},
        {"t": "{{ ; }}", "v": "2.5"},
        {"t": "{{ [ }}", "v": "2.5"},
        {"t": "{{- 3 }}", "v": "2.5"},
        {"t": "{{-3}}", "v": "2.5"},
        {"t": "{{ 3 -}}", "v": "2.5"},
        {"t": "{{ 3-}}", "v": "2.5"},
        {"t": "x {{- 3 -}} \n y", "v": "2.5"},
        {"t": "{{ -}}", "v": "2.5"},
        {"t": "{{ block \"b\" . }}{{ .Value }}{{ end }}{{ template \"b\" (args 1) }}", "v": "2.5"},
        {"t": "{{ template \"b\" 1 2 }}", "v": "2.5"},
        {"t": "{{ html \"<\" 1 }} {{ urlquery \"a\" \"b\" }} {{ js 1 }} {{ html (safeHtml \"<\") }}", "v": "2.5"},
        {"t": "{{ $value | gt 1.0 }}", "v": "2.5"},
        {"t": "{{ 2.0 | gt $value }}", "v": "2.5"},
        {"t": "{{ printf \"%s\" | len }}", "v": "2.5"},
        {"t": "{{ query \"q\" | len }}", "v": "2.5"},
        {"t": "{{ range $i, $e := . }}{{ $i }}{{ end }}", "v": "2.5"},
        {"t": "{{ range $e := . }}{{ $e }}{{ end }}", "v": "2.5"},
        {"t": "{{ printf \"%-8q|%8.3q\" \"a\" \"abcdef\" }}", "v": "2.5"},
        {"t": "{{ printf \"%d\" true }} {{ printf \"%s\" 1 }} {{ printf \"%s\" $labels }} {{ printf \"%d\" $labels }}", "v": "2.5"},
        {"t": "{{ printf \"%v\" . }}", "v": "2.5"},
        {"t": "{{ printf \"%+v\" 1 }} {{ printf \"%#v\" \"a\" }}", "v": "2.5"},
        {"t": "{{ printf \"%s\" (query \"q\") }}", "v": "2.5"},
        {"t": "{{ printf \"%v\" (query \"1\" | first) }}", "v": "2.5"},
        {"t": "{{ (query \"1\" | first) }}", "v": "2.5"},
        {"t": "{{ query \"1\" | first | printf \"%v\" }}", "v": "2.5"},
        {"t": "{{ print (query \"1\" | first) }}", "v": "2.5"},
        {"t": "{{ (query \"1\" | first).Labels }}", "v": "2.5"},
    ],
    "c3": [
        {"t": "{{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.container }}) is restarting {{ printf \"%.2f\" $value }} times / 10 minutes.", "v": "0.5", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "Filesystem on {{ $labels.device }} at {{ $labels.instance }} has only {{ printf \"%.2f\" $value }}% available space left.", "v": "4.1234", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ $value | humanizePercentage }} of requests to {{ $labels.destination_service }} failed", "v": "0.0523", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "High latency: p99 is {{ $value | humanizeDuration }} for {{ $labels.destination_service }}", "v": "0.3456", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "Memory usage {{ $value | humanize1024 }}B", "v": "3221225472", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "Throughput {{ humanize $value }}req/s", "v": "12345.678", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "Host out of memory (instance {{ $labels.instance }})\n  Node memory is filling up (< 10% left)\n  VALUE = {{ $value }}\n  LABELS = {{ $labels }}", "v": "7.5", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ if ne $labels.severity \"critical\" }}not critical{{ else }}critical{{ end }}", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{- if gt $value 0.9 -}}\nCRIT\n{{- else -}}\nWARN\n{{- end -}}", "v": "0.95", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ with $labels.instance }}{{ . | stripPort }}{{ end }} down since {{ $value | humanizeTimestamp }}", "v": "1700000000", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ range query \"q\" | sortByLabel \"instance\" }}{{ .Labels.instance }}={{ .Value | humanize }} {{ end }}", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ with query \"q\" }}{{ . | first | value | humanize }}{{ end }}", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ $labels.job | title }} on {{ $labels.instance | stripDomain }}: {{ printf \"%.1f%%\" $value }}", "v": "99.95", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "Link: {{ $externalURL }}{{ graphLink \"up == 0\" }}", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ $labels.pod | reReplaceAll \"-[a-z0-9]+-[a-z0-9]+$\" \"\" }}", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ printf \"%.0f\" $value }} errors; {{ printf \"%d\" 5 }}; {{ $value | printf \"%6.3f\" }}", "v": "42.5", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "SLO burn {{ printf \"%.2f\" $value }}x over 1h (budget {{ humanizePercentage 0.001 }})", "v": "14.4", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ toUpper $labels.severity }}: {{ len $labels }} labels", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "Value is {{ $value }}, rounded {{ printf \"%.3g\" $value }}", "v": "0.000123456", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ $value }} {{ .Value }} {{ $.Value }}", "v": "1e-7", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ range $k, $v := .Labels }}{{ if ne $k \"__name__\" }}{{ $k }}={{ $v }} {{ end }}{{ end }}", "v": "1", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{/* Istio */}}Service {{ index $labels \"destination_service\" }} 5xx {{ humanizePercentage $value }}", "v": "0.25", "l": {"instance": "10.0.0.1:9100", "job": "node", "namespace": "istio-system", "pod": "istiod-7f9b-x2", "container": "discovery", "severity": "warning", "destination_service": "reviews.default.svc.cluster.local", "device": "/dev/sda1", "mountpoint": "/"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "x\"y"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "tab\there"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "new\nline"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "ünï©ødé ✓"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "<script>&"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "a b+c"}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": ""}},
        {"t": "{{ $labels.a }}|{{ $labels }}|{{ printf \"%q\" $labels.a }}|{{ js $labels.a }}|{{ html $labels.a }}|{{ urlquery $labels.a }}", "v": "1", "l": {"a": "日本語"}},
    ],
    "c4": [
        {"t": "{{ :=  -}} len and printf )(  }}", "v": "2.5"},
        {"t": ".job lt endandlt -}}{{- $ :=lt ", "v": "2.5"},
        {"t": "{{ range lt.Labels ,  -}}true.job-1.5e3-1.5e3 defineargs) }}", "v": "2.5"},
        {"t": "{{ true or$x=:=$value title eq`r`  }}", "v": "2.5"},
        {"t": "{{ or-1.5e3 )nil( args lt }}", "v": "2.5"},
        {"t": "{{ \"a\"title -1.5e3 not  -}} \"a\" define true 1 }}", "v": "2.5"},
        {"t": "{{ $eq $valueindexend range  }}", "v": "2.5"},
        {"t": "{{ end and \"a\" $valuenot$printfhumanize -}}index$labels $labels  }}", "v": "2.5"},
        {"t": "{{ $labels (1 'c'| :=.Labels(not html .nil  }}", "v": "2.5"},
        {"t": "{{ -1.5e3\"%d %s %v\" |\n args }} print args}} }}", "v": "2.5"},
        {"t": "{{ humanizeargsprint = endprintf  }}", "v": "2.5"},
        {"t": "{{ notxdefine\nif }}", "v": "2.5"},
        {"t": "{{   }}nil args. .Labels  }}", "v": "2.5"},
        {"t": "{{ end'c' not }}", "v": "2.5"},
        {"t": "{{humanize humanize title .Valuex rangehtml   $labels)", "v": "2.5"},
        {"t": "{{ $ andhumanize or }}", "v": "2.5"},
        {"t": ". eq {{ print$ifelse else define`r` $value", "v": "2.5"},
        {"t": "{{ \n -1.5e3 }}", "v": "2.5"},
        {"t": "{{ $valueprintf :=}}range:= nil$x`r`print }}", "v": "2.5"},
        {"t": "{{ | -}} with |eq (notorargs printfnildefinetemplateif }}", "v": "2.5"},
        {"t": "{{ $value 1 title (  }}", "v": "2.5"},
        {"t": "{{ $x:=humanize:= $end }}", "v": "2.5"},
        {"t": "{{ $labels=end  }}", "v": "2.5"},
        {"t": "{{ printf$value `r` .Labels eq, 'c'\"a\" }}", "v": "2.5"},
        {"t": "{{ $xend|  }}", "v": "2.5"},
        {"t": "{{- range $indextemplatelen", "v": "2.5"},
        {"t": "{{ true) args ( }}template end $x'c'$valuewith }}", "v": "2.5"},
        {"t": "{{ print$x }}", "v": "2.5"},
        {"t": "{{  -}} \"%d %s %v\"print\"a\"index . }}", "v": "2.5"},
        {"t": "{{-   ifdefine|humanize", "v": "2.5"},
        {"t": "{{ len$labels\"%d %s %v\"end ,$.$ html }}", "v": "2.5"},
        {"t": "{{ .job ).Valuetitleor \"a\"  }}", "v": "2.5"},
        {"t": "= {{ 'c'eq ", "v": "2.5"},
        {"t": "{{ \"%d %s %v\" range  }}", "v": "2.5"},
        {"t": ")printfdefine{{ ) and }} html ", "v": "2.5"},
        {"t": "{{ print:=,or `r`true  := ,htmlargs }}", "v": "2.5"},
        {"t": "{{ printlt}}and }}", "v": "2.5"},
        {"t": "{{ indexhumanize }} html | 1html lentrue -1.5e3\nlen print  }}", "v": "2.5"},
        {"t": "nil (defineelse humanizetrue(index {{- humanize or templateargs ", "v": "2.5"},
        {"t": "{{ $  -}}index else\"a\"\"a\"-1.5e3eq )}} ( }}", "v": "2.5"},
        {"t": "{{ with else ) print .Labels html$xendtrue  }}", "v": "2.5"},
        {"t": "{{index\"%d %s %v\"$value ", "v": "2.5"},
        {"t": "$x{{ 'c'$xif\n .Labels ", "v": "2.5"},
        {"t": "{{ and .job -}}  -}}\"a\":= with`r`  }}", "v": "2.5"},
        {"t": "{{ .jobxeq   nothumanize }}", "v": "2.5"},
        {"t": "{{  -}}eq nil\"a\" \nhumanize humanize nil$labels  }}", "v": "2.5"},
        {"t": "{{ = printftrue1x$define 'c'`r` templateif\n }}", "v": "2.5"},
        {"t": "{{ $valueelse 'c'true .Labels printfelse define  }}", "v": "2.5"},
        {"t": "{{ 1\"%d %s %v\"}} .jobniltrue $labelsprint1 | :=index  }}", "v": "2.5"},
        {"t": "argsx){{-  $ {{- \"%d %s %v\"html htmlx ( and template ", "v": "2.5"},
        {"t": "{{ \"%d %s %v\"withhumanizedefinedefine}}, -}} truehumanize", "v": "2.5"},
        {"t": "end.Labels {{- ,index {{", "v": "2.5"},
        {"t": "{{ printf true\"%d %s %v\"if end \"a\" notrangetruetitle or $labels }} }}", "v": "2.5"},
        {"t": "{{ $value  -}} 1`r` }}", "v": "2.5"},
        {"t": "{{ = rangeprint }}", "v": "2.5"},
        {"t": "{{ \"%d %s %v\".Value }}", "v": "2.5"},
        {"t": "1 {{ ) $xx .\"%d %s %v\"", "v": "2.5"},
        {"t": "{{ ) nil lenif \n}}define$labels  }}", "v": "2.5"},
        {"t": "{{ -1.5e3  -}}  }}", "v": "2.5"},
        {"t": "{{ ('c' 'c'not \n`r`\"%d %s %v\" xhtml( end ,.Value }}", "v": "2.5"},
        {"t": "{{ true true \n argsor `r`or if  }}", "v": "2.5"},
        {"t": "{{ definehumanize eq= }}", "v": "2.5"},
        {"t": "{{ ( ) $value }}", "v": "2.5"},
        {"t": "{{ 1 $notdefinetitle\"a\" lt templateifrange := and (  }}", "v": "2.5"},
        {"t": "printfhumanizehumanize{{-  nil", "v": "2.5"},
        {"t": "1{{- end ifand ", "v": "2.5"},
        {"t": "{{ .Labelsrangetemplate }}", "v": "2.5"},
        {"t": "{{ or. .Labels {{-  template  else`r`.Labels \"%d %s %v\" {{- ", "v": "2.5"},
        {"t": "{{ nil |titlehtmlhumanize args \"a\"$value\"%d %s %v\". }}", "v": "2.5"},
        {"t": "{{ .Labels$labels }}", "v": "2.5"},
        {"t": "{{=).Labels= ", "v": "2.5"},
        {"t": "{{ eq $labels  }}", "v": "2.5"},
        {"t": ".Labels= \"a\" =| xif {{- nil or.Value ", "v": "2.5"},
        {"t": "{{ not=endnotnil else print . defineif eqindex `r`  }}", "v": "2.5"},
        {"t": "{{ -1.5e3htmlhumanizeand .Value1range not-1.5e3 x-1.5e3 }}", "v": "2.5"},
        {"t": "{{ nil( .job 1title html     -}}.Value$ ( $x  }}", "v": "2.5"},
        {"t": "{{ \"a\"= (not= not -1.5e3 printf }}", "v": "2.5"},
        {"t": "{{ elsenot`r` if =with.Value template print  }}", "v": "2.5"},
        {"t": "{{ 1and| len$labels.Labels .Labels }}", "v": "2.5"},
        {"t": "{{ 'c'1 not -}} print htmland }}", "v": "2.5"},
        {"t": "  {{-  \"a\".job.Labels$not", "v": "2.5"},
        {"t": "{{  -}} .  }}", "v": "2.5"},
        {"t": ".$valueand .Labelsnil {{define1 html title", "v": "2.5"},
        {"t": "template -}}eqor1printdefine {{ ", "v": "2.5"},
        {"t": "{{ }}define | eqif ifhumanizehumanizenot \"%d %s %v\"  }}", "v": "2.5"},
        {"t": "{{  -}} ,.Value\n)1 | humanize 'c'argstemplate }}", "v": "2.5"},
        {"t": "{{ html.jobprint\"a\"else printf  }}", "v": "2.5"},
        {"t": "{{ defineif\nif'c'.Value }}", "v": "2.5"},
        {"t": "{{ argslenprint}}  \"%d %s %v\"$labels(= }} not. }}", "v": "2.5"},
        {"t": "}} $html ((x len(x.Value else {{-  x", "v": "2.5"},
        {"t": "{{ htmlnil |humanize `r` template template -}}.Labelsor\"a\"}}}}|  }}", "v": "2.5"},
        {"t": " -}}else)\"a\" {{\"a\" -}} true argsrangeand printf = ", "v": "2.5"},
        {"t": "{{ args = htmltrueargs }}", "v": "2.5"},
        {"t": "{{ html |$labels }}", "v": "2.5"},
        {"t": ")humanize else .jobprintf html -1.5e3 orx{{-  `r`1\n ", "v": "2.5"},
        {"t": "{{ 1template$ humanizedefinewith ,not := }}", "v": "2.5"},
        {"t": "{{ `r`. `r`template =| :=\"%d %s %v\".job || .Value }}", "v": "2.5"},
        {"t": "{{ $labels.job }}", "v": "2.5"},
        {"t": "html }} or{{.joband$valuetitlehumanizeend", "v": "2.5"},
        {"t": "{{ $x`r` args $value $labelshtml .job}}$valuetitlerange`r` }}", "v": "2.5"},
        {"t": "{{ stripPort (len $labels) }}", "v": "1e6"},
        {"t": "{{ slice (printf \"%d\" 3) }}", "v": "-3"},
        {"t": "{{ humanizeDuration $value }}", "v": "2.5"},
        {"t": "{{ len  }}", "v": "0"},
        {"t": "{{ $labels | or  }}", "v": "2.5"},
        {"t": "{{ (humanize $value) | print nil }}", "v": "-3"},
        {"t": "{{ (len $labels) | index .Value }}", "v": "1e6"},
        {"t": "{{ \"s\" | args  }}", "v": "2.5"},
        {"t": "{{ (humanize $value) | match \"a\"  }}", "v": "2.5"},
        {"t": "{{ 2.5 | printf \"%v|%s|%d|%.1f\" (humanize $value) }}", "v": "1e6"},
        {"t": "{{ match \"a\"  }}", "v": "-3"},
        {"t": "{{ args $labels $value }}", "v": "1e6"},
        {"t": "{{ and $labels.job (len $labels) }}", "v": "0"},
        {"t": "{{ urlquery true (printf \"%d\" 3) (printf \"%d\" 3) }}", "v": "0"},
        {"t": "{{ $labels | reReplaceAll \"j\" \"k\" 2.5 }}", "v": "0"},
        {"t": "{{ 1 | ne true $value }}", "v": "-3"},
        {"t": "{{ reReplaceAll \"j\" \"k\" nil $labels }}", "v": "-3"},
        {"t": "{{ nil | print true 1 }}", "v": "-3"},
        {"t": "{{ lt true }}", "v": "-3"},
        {"t": "{{ toUpper (printf \"%d\" 3) }}", "v": "0"},
        {"t": "{{ \"s\" | js  }}", "v": "2.5"},
        {"t": "{{ title true . }}", "v": "0"},
        {"t": "{{ html (printf \"%d\" 3) $value (printf \"%d\" 3) }}", "v": "0"},
        {"t": "{{ index (humanize $value) }}", "v": "1e6"},
        {"t": "{{ value  }}", "v": "-3"},
        {"t": "{{ parseDuration true (len $labels) (humanize $value) }}", "v": "0"},
        {"t": "{{ .Value | humanizePercentage  }}", "v": "0"},
        {"t": "{{ html (len $labels) }}", "v": "-3"},
        {"t": "{{ . | or $labels.job }}", "v": "0"},
        {"t": "{{ lt . $labels 1 }}", "v": "-3"},
        {"t": "{{ 1 | parseDuration  }}", "v": "-3"},
        {"t": "{{ printf \"%v|%s|%d|%.1f\"  }}", "v": "0"},
        {"t": "{{ humanizePercentage (len $labels) (humanize $value) }}", "v": "0"},
        {"t": "{{ label \"job\" \"s\" $labels.job }}", "v": "2.5"},
        {"t": "{{ label \"job\" (humanize $value) }}", "v": "1e6"},
        {"t": "{{ . | index  }}", "v": "2.5"},
        {"t": "{{ 2.5 | gt 1 }}", "v": "2.5"},
        {"t": "{{ or .Value 2.5 $value }}", "v": "-3"},
        {"t": "{{ and 1 (printf \"%d\" 3) }}", "v": "-3"},
        {"t": "{{ (humanize $value) | eq $value }}", "v": "2.5"},
        {"t": "{{ $value | humanizeDuration (printf \"%d\" 3) $value 1 }}", "v": "1e6"},
        {"t": "{{ safeHtml true (len $labels) $labels }}", "v": "1e6"},
        {"t": "{{ humanize  }}", "v": "-3"},
        {"t": "{{ value . (printf \"%d\" 3) $labels }}", "v": "-3"},
        {"t": "{{ or true }}", "v": "-3"},
        {"t": "{{ gt  }}", "v": "-3"},
        {"t": "{{ reReplaceAll \"j\" \"k\" $labels }}", "v": "2.5"},
        {"t": "{{ (len $labels) | len true $value }}", "v": "-3"},
        {"t": "{{ label \"job\" 1 }}", "v": "0"},
        {"t": "{{ humanizePercentage true (humanize $value) }}", "v": "0"},
        {"t": "{{ true | ne (len $labels) $value (len $labels) }}", "v": "-3"},
        {"t": "{{ $labels.job | query $labels . }}", "v": "0"},
        {"t": "{{ (printf \"%d\" 3) | printf \"%v|%s|%d|%.1f\"  }}", "v": "1e6"},
        {"t": "{{ (len $labels) | not $labels.job }}", "v": "2.5"},
        {"t": "{{ match \"a\" $value (printf \"%d\" 3) }}", "v": "1e6"},
        {"t": "{{ first . }}", "v": "-3"},
        {"t": "{{ nil | toTime  }}", "v": "1e6"},
        {"t": "{{ title true $labels.job true }}", "v": "-3"},
        {"t": "{{ gt nil (len $labels) }}", "v": "-3"},
        {"t": "{{ nil | urlquery $labels.job . }}", "v": "1e6"},
        {"t": "{{ humanizePercentage .Value }}", "v": "1e6"},
        {"t": "{{ js . }}", "v": "-3"},
        {"t": "{{ ne 1 $labels.job }}", "v": "-3"},
        {"t": "{{ len  }}", "v": "1e6"},
        {"t": "{{ (printf \"%d\" 3) | match \"a\" (humanize $value) (printf \"%d\" 3) $labels.job }}", "v": "2.5"},
        {"t": "{{ urlquery $labels (humanize $value) }}", "v": "-3"},
        {"t": "{{ js (printf \"%d\" 3) }}", "v": "2.5"},
        {"t": "{{ $labels.job | print $labels }}", "v": "2.5"},
        {"t": "{{ index . }}", "v": "0"},
        {"t": "{{ $value | not nil 2.5 . }}", "v": "2.5"},
        {"t": "{{ index 2.5 . $value }}", "v": "2.5"},
        {"t": "{{ humanize  }}", "v": "0"},
        {"t": "{{ . | slice (len $labels) nil }}", "v": "-3"},
        {"t": "{{ print nil . }}", "v": "1e6"},
        {"t": "{{ $labels | label \"job\"  }}", "v": "-3"},
        {"t": "{{ $labels | html \"s\" }}", "v": "1e6"},
        {"t": "{{ query \"s\" 1 }}", "v": "1e6"},
        {"t": "{{ args true }}", "v": "1e6"},
        {"t": "{{ reReplaceAll \"j\" \"k\" .Value }}", "v": "0"},
        {"t": "{{ (humanize $value) | stripPort  }}", "v": "0"},
        {"t": "{{ js (humanize $value) . }}", "v": "-3"},
        {"t": "{{ humanizeDuration (humanize $value) }}", "v": "1e6"},
        {"t": "{{ (len $labels) | value  }}", "v": "-3"},
        {"t": "{{ printf \"%v|%s|%d|%.1f\" true }}", "v": "-3"},
        {"t": "{{ gt (len $labels) (humanize $value) }}", "v": "1e6"},
        {"t": "{{ urlquery $labels true 1 }}", "v": "0"},
        {"t": "{{ $labels.job | reReplaceAll \"j\" \"k\" $labels nil }}", "v": "0"},
        {"t": "{{ value  }}", "v": "0"},
        {"t": "{{ parseDuration (printf \"%d\" 3) 2.5 }}", "v": "-3"},
        {"t": "{{ title 2.5 . }}", "v": "0"},
        {"t": "{{ . | humanizePercentage .Value }}", "v": "0"},
        {"t": "{{ (humanize $value) | title $labels.job $labels }}", "v": "0"},
        {"t": "{{ 1 | humanizePercentage 2.5 2.5 }}", "v": "-3"},
        {"t": "{{ match \"a\"  }}", "v": "0"},
        {"t": "{{ urlquery $value nil (len $labels) }}", "v": "2.5"},
        {"t": "{{ $value | eq true }}", "v": "2.5"},
        {"t": "{{ nil | humanizeDuration . (len $labels) $labels }}", "v": "1e6"},
        {"t": "{{ gt  }}", "v": "2.5"},
        {"t": "{{ toTime  }}", "v": "2.5"},
        {"t": "{{ $labels | label \"job\" $labels .Value true }}", "v": "-3"},
    ],
}


def promtool_run(cases):
    d = tempfile.mkdtemp()
    rules = {"groups": [{"name": "g", "rules": []}]}
    series, tests = list(EXTRA_SERIES), []
    for i, c in cases:
        labels = dict(c.get("l", {"instance": "a:9090", "job": "j"}))
        labels["case"] = str(i)
        sel = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
        series.append({"series": "m{" + sel + "}", "values": c.get("v", "1")})
        rules["groups"][0]["rules"].append({"alert": f"A{i}", "expr": f'm{{case="{i}"}}', "annotations": {"t": c["t"]}})
        tests.append({"eval_time": "0m", "alertname": f"A{i}",
                      "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"t": "\u0000never"}}]})
    json.dump(rules, open(os.path.join(d, "rules.yml"), "w"))
    json.dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
               "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}]},
              open(os.path.join(d, "test.yml"), "w"))
    res = subprocess.run(["promtool", "test", "rules", os.path.join(d, "test.yml")], capture_output=True, text=True)
    return res.stdout + res.stderr


def render(cases):
    """Prometheus's output for each case (None when promtool gave nothing usable)."""
    got = {}
    pending = list(enumerate(cases))
    for _ in range(3):
        txt = promtool_run(pending)
        perr = {int(m.group(1)): m.group(2) for m in re.finditer(r'"A(\d+)": annotation "t": (.*)', txt)}
        if perr:
            got.update({k: "PARSE: " + v for k, v in perr.items()})
            pending = [(i, c) for i, c in pending if i not in perr]
            continue
        pat = r'alertname: A(\d+), time.*?got:\[\s*0:\s*Labels:\{.*?\}\s*Annotations:\{t=("(?:[^"\\]|\\.)*")\}'
        for m in re.finditer(pat, txt, re.S):
            got[int(m.group(1))] = ast.literal_eval(m.group(2))
        break
    return [got.get(i) for i in range(len(cases))]


def rust_str(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\u{%x}" % o)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def keep(t, want, labels):
    """Cases whose output depends on more than the template engine are left out."""
    if want is None:
        return False
    if 'query "q"' in t and "sortByLabel" not in t:
        return False  # promtool returns q's two series in no fixed order
    if "[0xc" in want:
        return False  # Go printed a pointer's address
    if "externalURL" in t or "1i" in t or "maximum template depth" in want:
        return False  # promtool has no external URL; complex numbers; Go's depth limit
    return all(v != "" for v in labels.values())  # Prometheus drops empty labels


def main():
    rows = []
    for group in ["c1", "c2", "c3", "c4"]:
        cases = GROUPS[group]
        for i, (c, want) in enumerate(zip(cases, render(cases))):
            labels = dict(c.get("l", {"instance": "a:9090", "job": "j"}))
            if not keep(c["t"], want, labels):
                continue
            labels["case"] = str(i)
            labels["__name__"] = "m"
            rows.append((f"__alert_A{i}", c["t"], c.get("v", "1"), sorted(labels.items()), want))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "table.rs")
    with open(path, "w") as o:
        o.write("// Generated by regen.py from Prometheus 2.42: each expected output is what `promtool test\n")
        o.write("// rules` (Debian's Prometheus 2.42 build) rendered for the template as an annotation of the\n")
        o.write("// alert, for a series with these labels and this value. Parse failures are\n")
        o.write("// `PARSE: <promtool's message>`. Query `q` saw q{instance=\"a\"} 11 and q{instance=\"b\"} 21;\n")
        o.write("// a number queries a scalar.\n\n")
        o.write("/// (alert name, template, value, labels, expected output)\n")
        o.write("pub type Case = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)], &'static str);\n\n")
        o.write("#[rustfmt::skip]\npub const CASES: &[Case] = &[\n")
        for name, t, v, labels, want in rows:
            ls = ", ".join(f"({rust_str(k)}, {rust_str(val)})" for k, val in labels)
            o.write(f"    ({rust_str(name)}, {rust_str(t)}, {rust_str(v)}, &[{ls}],\n        {rust_str(want)}),\n")
        o.write("];\n")
    print(f"{len(rows)} cases written to {path}")


if __name__ == "__main__":
    main()
