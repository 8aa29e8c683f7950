# Summarises the output of a batch of placement runs (make
# jepsen-placement): runs, valid and invalid ones (with their report and
# anomaly types), and what the runs exercised, from each run's notes.
/^== (VALID|INVALID)  workload=placement/ {
	runs++; cur = $0; valid_run = ($2 == "VALID"); if (valid_run) valid++
	match($0, /seed=[0-9]+/); seed = substr($0, RSTART + 5, RLENGTH - 5)
	next
}
/^   ANOMALY / { anom[$2]++; if (!(seed in bad)) bad[seed] = $2; else if (index(bad[seed], $2) == 0) bad[seed] = bad[seed] "," $2; next }
/^     .*SIGKILL worker/ { wkill++ }
/^     .*isolate worker|^     .*cut off worker|^     .*partition worker/ { wpart++ }
/^     .*SIGKILL leader/ { lkill++ }
/^     .*isolate leader/ { lpart++ }
/^     .*SIGSTOP worker/ { wpause++ }
/note: migrations: / {
	if (match($0, /acknowledged [0-9]+ (live|begun)/)) { n = substr($0, RSTART + 13); mig_ok += n + 0 }
	if (match($0, /begun \([a-z]+\)/)) modes[substr($0, RSTART + 7, RLENGTH - 8)]++
	if (match($0, /[0-9]+ cold/)) mig_cold += substr($0, RSTART, RLENGTH - 5)
	if (match($0, /failed [0-9]+/)) mig_fail += substr($0, RSTART + 7, RLENGTH - 7)
	if (match($0, /anti-affinity [0-9]+/)) aff += substr($0, RSTART + 14, RLENGTH - 14)
	if (match($0, /unknown [0-9]+$/)) mig_unknown += substr($0, RSTART + 8, RLENGTH - 8)
}
/note: [0-9]+ VMs seen arrived on another host by (live )?migration/ { match($0, /note: [0-9]+/); moved += substr($0, RSTART + 6, RLENGTH - 6); if (substr($0, RSTART + 6, RLENGTH - 6) + 0 > 0) runs_moved++ }
/ ended without moving the VM/ { match($0, /; [0-9]+ ended without/); stayed += substr($0, RSTART + 2, RLENGTH - 16) }
/creates refused by the quota/ { match($0, /: [0-9]+ creates refused/); quota += substr($0, RSTART + 2, RLENGTH - 18) }
/note: double-run|ANOMALY double-run/ { }
/^   report: / { if (!valid_run) reports[seed] = $2 }
END {
	printf "== placement campaign: %d runs, %d valid, %d invalid\n", runs, valid, runs - valid
	for (s in bad) printf "   INVALID seed %s: %s (%s)\n", s, bad[s], reports[s]
	for (a in anom) printf "   anomalies %s: %d\n", a, anom[a]
	printf "   faults listed (first 8 per run): %d worker SIGKILLs, %d worker isolations, %d worker SIGSTOPs, %d leader SIGKILLs, %d leader isolations\n", wkill, wpart, wpause, lkill, lpart
	printf "   migrations: %d begun (acknowledged), %d failed (refused by hard anti-affinity %d), %d unknown, %d cold moves; %d VMs seen arrived on another host by migration (in %d runs); %d seen staying after a begun migration ended\n", mig_ok, mig_fail, aff, mig_unknown, mig_cold, moved, runs_moved, stayed
	for (m in modes) printf "   runs whose migrations were %s: %d\n", m, modes[m]
	printf "   creates refused by the quota (409 quota_exceeded): %d\n", quota
}
