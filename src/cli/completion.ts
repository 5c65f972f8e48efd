import type { Command } from "./context.ts";

export const SHELLS = ["bash", "zsh", "fish"] as const;

/** Commands whose positional arguments are model names (completed from the running daemon's store). */
const MODEL_COMMANDS = ["run", "rm", "remove", "inspect", "show", "push", "tag", "cp", "unload", "stop", "configure", "bench"];

/**
 * How the scripts list model names: never starts a daemon (a TAB must not),
 * one name per line, nothing when no daemon answers.
 */
const LIST_MODELS = "mr --no-autostart list --names 2>/dev/null";

interface Entry {
  name: string;
  summary: string;
  flags: string[];
  /** Flags whose value is a file name (`valueName` FILE or DIR). */
  fileFlags: string[];
  /** Flags whose value is a stored model's name (`valueName` MODEL: `package --from`). */
  modelFlags: string[];
  subcommands: readonly string[];
}

const entries = (commands: readonly Command[]): Entry[] =>
  commands.flatMap((c) =>
    [c.name, ...(c.aliases ?? [])].map((name) => ({
      name,
      summary: c.summary,
      // A name that already starts with "-" is a spelling of its own (the engine's llama-server flags: -ngl, --ctx-size).
      flags: [...Object.entries(c.flags).flatMap(([f, s]) => [f.startsWith("-") ? f : `--${f}`, ...(s.short ? [`-${s.short}`] : [])]), "--help"],
      fileFlags: Object.entries(c.flags)
        .filter(([, s]) => s.valueName === "FILE" || s.valueName === "DIR")
        .flatMap(([f, s]) => [f.startsWith("-") ? f : `--${f}`, ...(s.short ? [`-${s.short}`] : [])]),
      modelFlags: Object.entries(c.flags)
        .filter(([, s]) => s.valueName === "MODEL")
        .flatMap(([f, s]) => [f.startsWith("-") ? f : `--${f}`, ...(s.short ? [`-${s.short}`] : [])]),
      subcommands: c.subcommands ?? [],
    })),
  );

/**
 * A completion script for `shell` covering every command and flag, file
 * names after flags that take a file, and model names after commands that
 * take one. Names with `:` (tags, `host:port/...`) complete whole: bash
 * splits words at `:`, so the bash script rejoins them
 * (`_get_comp_words_by_ref -n :` and `__ltrim_colon_completions` from
 * bash-completion, or the same done by hand when it is not loaded).
 */
export function completionScript(shell: (typeof SHELLS)[number], commands: readonly Command[]): string {
  const list = entries(commands);
  const fileFlags = [...new Set(list.flatMap((e) => e.fileFlags))];
  const modelFlags = [...new Set(list.flatMap((e) => e.modelFlags))];
  if (shell === "bash") {
    const cases = list.map((e) => `    ${e.name}) opts="${[...e.flags, ...e.subcommands].join(" ")}" ;;`).join("\n");
    return `# bash completion for mr; load with: source <(mr completion bash)
_mr() {
  local cur cword words=()
  if declare -F _get_comp_words_by_ref >/dev/null; then
    _get_comp_words_by_ref -n : cur words cword
  else
    # bash-completion is not loaded: split the line at blanks only, so "a:b" stays one word.
    local line="\${COMP_LINE:0:COMP_POINT}"
    read -ra words <<< "$line"
    [[ "$line" =~ [[:space:]]$ || \${#words[@]} -eq 0 ]] && words+=("")
    cword=$(( \${#words[@]} - 1 ))
    cur="\${words[cword]}"
  fi
  local cmd="\${words[1]}" prev="" opts=""
  (( cword > 0 )) && prev="\${words[cword-1]}"
  if [ "$cword" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${list.map((e) => e.name).join(" ")}" -- "$cur") )
    return
  fi
  local model_value=""
  case "$prev" in
    ${fileFlags.join("|") || "--no-file-flags"})
      compopt -o filenames 2>/dev/null
      COMPREPLY=( $(compgen -f -- "$cur") )
      return ;;
    ${modelFlags.join("|") || "--no-model-flags"}) model_value=1 ;;
  esac
  case "$cmd" in
${cases}
  esac
  if [ -n "$model_value" ]; then
    opts="$(${LIST_MODELS})"
  elif [[ "$cur" != -* ]]; then
    case "$cmd" in ${MODEL_COMMANDS.join("|")}) opts="$opts $(${LIST_MODELS})" ;; esac
  fi
  COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  # bash replaces only the part of the word after its last ':'; drop what is already typed up to there.
  if declare -F __ltrim_colon_completions >/dev/null; then
    __ltrim_colon_completions "$cur"
  elif [[ "$cur" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
    local prefix="\${cur%"\${cur##*:}"}" i
    for i in "\${!COMPREPLY[@]}"; do COMPREPLY[i]="\${COMPREPLY[i]#"$prefix"}"; done
  fi
}
complete -F _mr mr model-runner
`;
  }
  if (shell === "zsh") {
    const cmds = list.map((e) => `    '${e.name}:${e.summary.replace(/'/g, "").replace(/:/g, "\\:")}'`).join("\n");
    const cases = list.map((e) => `    ${e.name}) opts=(${[...e.flags, ...e.subcommands].map((f) => `'${f}'`).join(" ")}) ;;`).join("\n");
    return `#compdef mr model-runner
# zsh completion for mr; load with: source <(mr completion zsh)
_mr() {
  local -a commands opts models
  commands=(
${cmds}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "\${words[CURRENT-1]}" in
    ${fileFlags.join("|") || "--no-file-flags"}) _files; return ;;
    ${modelFlags.join("|") || "--no-model-flags"})
      models=(\${(f)"$(${LIST_MODELS})"})
      compadd -a models
      return ;;
  esac
  case "\${words[2]}" in
${cases}
  esac
  if [[ "\${words[CURRENT]}" == -* ]]; then
    compadd -a opts
    return
  fi
  case "\${words[2]}" in
    ${MODEL_COMMANDS.join("|")})
      # compadd takes names literally: a ':' in a tag is not a description separator here.
      models=(\${(f)"$(${LIST_MODELS})"})
      compadd -a models ;;
  esac
  compadd -a opts
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
      // -r -F: the flag takes a value, and that value is a file name.
      // -r -a (...): the value is a stored model's name.
      const value = e.fileFlags.includes(f) ? " -r -F" : e.modelFlags.includes(f) ? ` -r -a '(${LIST_MODELS})'` : "";
      lines.push(`complete -c mr -n '__fish_seen_subcommand_from ${e.name}' ${opt}${value}`);
    }
    for (const s of e.subcommands) lines.push(`complete -c mr -n '__fish_seen_subcommand_from ${e.name}' -a ${s}`);
  }
  lines.push(`complete -c mr -n '__fish_seen_subcommand_from ${MODEL_COMMANDS.join(" ")}' -a '(${LIST_MODELS})'`);
  return `${lines.join("\n")}\n`;
}
