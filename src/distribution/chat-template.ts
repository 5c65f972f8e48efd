import { InvalidRequestError } from "../errors.ts";

/**
 * What Ollama's TEMPLATE language (Go text/template) looks like: actions on
 * the dot (`{{ .System }}`) and its keywords (`{{ if }}`, `{{ range }}`,
 * `{{ end }}`). Jinja has none of them inside `{{ }}`; some even parse as
 * Jinja (`{{ if .System }}` does), so they are caught before parsing.
 */
const GO_TEMPLATE = /\{\{-?\s*(?:\.[A-Za-z]|\$|(?:if|range|with|template|block|define|end|else)\b)/;

/**
 * Checks a chat template given for a model (Modelfile `TEMPLATE`,
 * `/api/create` `template`). The engine formats chats with Jinja templates
 * (a GGUF's `tokenizer.chat_template`, HF's chat_template.jinja), so a Jinja
 * template is applied as given; Ollama's Go templates cannot be, and are a
 * 400 that says so rather than a model that formats its prompts wrongly.
 * Throws InvalidRequestError naming `param`.
 */
export async function checkChatTemplate(text: string, param = "template"): Promise<void> {
  if (GO_TEMPLATE.test(text)) {
    throw new InvalidRequestError(
      `'${param}' is an Ollama (Go) template, which this engine cannot apply: it formats chats with Jinja templates ` +
        "(as in a GGUF's tokenizer.chat_template, e.g. {% for message in messages %}{{ message['content'] }}{% endfor %}). " +
        "Give a Jinja template, or leave TEMPLATE out to use the model's own.",
      param,
    );
  }
  // The parser node-llama-cpp's Jinja chat wrapper renders with: a template it cannot parse would fail every chat.
  const { Template } = await import("@huggingface/jinja");
  try {
    new Template(text);
  } catch (error) {
    throw new InvalidRequestError(`'${param}' is not a valid Jinja chat template: ${(error as Error).message}.`, param, { cause: error });
  }
}
