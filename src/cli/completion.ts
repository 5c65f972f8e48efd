import type { Command } from "./context.ts";

export const SHELLS = ["bash", "zsh", "fish"] as const;

interface Entry {
  name: string;
  summary: string;
  flags: string[];
  subcommands: readonly string[];
}

const entries = (commands: readonly Command[]): Entry[] =>
  commands.flatMap((c) =>
    [c.name, ...(c.aliases ?? [])].map((name) => ({
      name,
      summary: c.summary,
      // A name that already starts with "-" is a spelling of its own (the engine's llama-server flags: -ngl, --ctx-size).
      flags: [...Object.entries(c.flags).flatMap(([f, s]) => [f.startsWith("-") ? f : `--${f}`, ...(s.short ? [`-${s.short}`] : [])]), "--help"],
      subcommands: c.subcommands ?? [],
    })),
  );

/**
 * A completion script for `shell` covering every command and flag, plus
 * model names (from `mr ls -q`-style names) after commands that take one.
 */
export function completionScript(shell: (typeof SHELLS)[number], commands: readonly Command[]): string {
  const list = entries(commands);
  const modelCommands = ["run", "rm", "remove", "inspect", "show", "push", "tag", "unload", "stop", "configure"];
  if (shell === "bash") {
    const cases = list.map((e) => `    ${e.name}) opts="${[...e.flags, ...e.subcommands].join(" ")}" ;;`).join("\n");
    return `# bash completion for mr; load with: source <(mr completion bash)
_mr() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="\${COMP_WORDS[1]}" opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${list.map((e) => e.name).join(" ")}" -- "$cur") )
    return
  fi
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" != -* ]]; then
    case "$cmd" in ${modelCommands.join("|")}) opts="$opts $(mr list --json 2>/dev/null | sed -n 's/.*"model": "\\(.*\\)",/\\1/p')" ;; esac
  fi
  COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}
complete -F _mr mr model-runner
`;
  }
  if (shell === "zsh") {
    const cmds = list.map((e) => `    '${e.name}:${e.summary.replace(/'/g, "")}'`).join("\n");
    const cases = list.map((e) => `    ${e.name}) _values 'option' ${[...e.flags, ...e.subcommands].map((f) => `'${f}'`).join(" ")} ;;`).join("\n");
    return `#compdef mr model-runner
# zsh completion for mr; load with: source <(mr completion zsh)
_mr() {
  local -a commands
  commands=(
${cmds}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "\${words[2]}" in
${cases}
  esac
}
compdef _mr mr model-runner
`;
  }
  const lines = ["# fish completion for mr; load with: mr completion fish | source", "complete -c mr -f"];
  for (const e of list) {
    lines.push(`complete -c mr -n '__fish_use_subcommand' -a ${e.name} -d '${e.summary.replace(/'/g, "")}'`);
    for (const f of e.flags) {
      // fish: -s for one letter, -o for old-style single-dash names (-ngl), -l for --long.
      const opt = f.startsWith("--") ? `-l ${f.slice(2)}` : f.length === 2 ? `-s ${f.slice(1)}` : `-o ${f.slice(1)}`;
      lines.push(`complete -c mr -n '__fish_seen_subcommand_from ${e.name}' ${opt}`);
    }
    for (const s of e.subcommands) lines.push(`complete -c mr -n '__fish_seen_subcommand_from ${e.name}' -a ${s}`);
  }
  return `${lines.join("\n")}\n`;
}
