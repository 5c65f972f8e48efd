import { getLlama, LlamaGrammarEvaluationState, type Llama, type LlamaGrammar, type LlamaModel } from "node-llama-cpp";
import { tinyModel } from "./models.ts";

/**
 * Asks llama.cpp's own grammar engine whether a GBNF grammar accepts a text:
 * the tiny model has a byte token (id 3 + byte) for every byte, so the text
 * is fed byte by byte, then the grammar must allow end-of-generation. Uses
 * node-llama-cpp's sampler bindings (internal, as its own LlamaChat does).
 */
export interface GrammarMatcher {
  llama: Llama;
  compile(gbnf: string): Promise<LlamaGrammar>;
  accepts(grammar: LlamaGrammar, text: string): boolean;
  dispose(): Promise<void>;
}

type Bindings = {
  AddonSampler: {
    canBeNextTokenForGrammarEvaluationState(state: unknown, token: number): boolean;
    acceptGrammarEvaluationStateToken(state: unknown, token: number): void;
  };
};

export async function grammarMatcher(): Promise<GrammarMatcher> {
  const llama = await getLlama({ gpu: false });
  const model: LlamaModel = await llama.loadModel({ modelPath: await tinyModel({ seed: 1 }) });
  const sampler = (llama as unknown as { _bindings: Bindings })._bindings.AddonSampler;
  const eos = model.tokens.eos!;
  return {
    llama,
    compile: (gbnf) => llama.createGrammar({ grammar: gbnf }),
    accepts(grammar, text) {
      const state = (new LlamaGrammarEvaluationState({ model, grammar }) as unknown as { _state: unknown })._state;
      for (const byte of Buffer.from(text, "utf8")) {
        if (!sampler.canBeNextTokenForGrammarEvaluationState(state, 3 + byte)) return false;
        sampler.acceptGrammarEvaluationStateToken(state, 3 + byte);
      }
      return sampler.canBeNextTokenForGrammarEvaluationState(state, eos);
    },
    async dispose() {
      await model.dispose();
    },
  };
}
