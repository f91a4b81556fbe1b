# bench/section.sh is sourced by the benchmark scripts that own one section
# of docs/benchmarks.md.
#
# replace_section FILE HEAD TEXT: removes the section that starts with the
# line HEAD (up to the next "## " heading) from FILE, then appends TEXT.
replace_section() {
	local out="$1" head="$2" text="$3" tmp
	tmp="$(mktemp)"
	if [ -f "$out" ]; then
		awk -v head="$head" '$0==head {skip=1; next} skip && /^## / {skip=0} !skip' "$out" >"$tmp"
	fi
	{ cat "$tmp"; echo; echo "$text"; } | cat -s >"$out"
	rm -f "$tmp"
}
