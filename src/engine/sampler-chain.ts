import type { Token } from "node-llama-cpp";
import { dryPenalties, type DrySettings } from "./dry.ts";
import { Mt19937 } from "./mt19937.ts";
import { penaltiesActive, type SamplingParams } from "./sampling.ts";

/**
 * llama-server's sampler chain, run in JavaScript over the distribution the
 * binding reports (see sampling.ts for when). Each step follows llama.cpp's
 * implementation in src/llama-sampler.cpp of the bundled release: logit
 * biases, then the request's samplers in order, then a draw (or Mirostat).
 * Candidates are `log p` of the model's distribution, which differs from the
 * logits by a constant that no sampler depends on but repeat_penalty (it
 * scales a logit by its sign): where it leads the chain, the binding applies
 * it to the raw logits first (`penalized`, see generate.ts).
 *
 * A seeded request draws what llama-server draws: the same generators
 * (mt19937.ts; XTC has its own, as there), one draw per token, over the
 * candidates in llama.cpp's order. That order is the vocabulary's until a
 * sampler sorts (top-k, top-p, typical-p, ...), though the binding reports
 * the distribution sorted: the chain keeps it sorted, which every sorting
 * sampler needs, and puts the survivors back in vocabulary order for a draw
 * where llama.cpp never sorted (`top_k: 0` and no other sorting sampler).
 * Under a grammar llama-server samples first without it and again with it
 * when the token does not fit, a second draw the chain does not make.
 */

interface Candidate {
  id: Token;
  logit: number;
  p: number;
}

/** A token chosen by the chain and the candidates left after it, most probable first. */
export interface ChainResult {
  token: Token;
  /** Probability of `token` after the whole chain. */
  probability: number;
  /** Candidates with a non-zero probability after the chain, most probable first. */
  candidates: ReadonlyArray<{ token: Token; probability: number }>;
}

export class SamplerChain {
  /** The `dist` sampler's generator (Mirostat's, when it replaces the chain). */
  private readonly rng: Mt19937;
  /** XTC's own generator, seeded alike. */
  private readonly xtcRng: Mt19937;
  /** Mirostat's running surprise target. */
  private mu: number;

  constructor(
    private readonly params: SamplingParams,
    /** The request's logit biases with `ignore_eos`'s bans added (summed per token). */
    private readonly bias: ReadonlyMap<Token, number>,
    private readonly vocabSize: number,
    seed: number,
    /** DRY's settings when it is on (its breakers depend on the vocabulary); null = off. */
    private readonly dry: DrySettings | null = null,
    /** The binding applied the penalties (and the biases) to the raw logits before reporting the distribution. */
    private readonly penalized = false,
  ) {
    this.rng = new Mt19937(seed);
    this.xtcRng = new Mt19937(seed);
    this.mu = 2 * params.mirostatTau;
  }

  /**
   * Chooses the next token from `distribution` (token → probability, every
   * token of the vocabulary the binding reported, grammar-masked ones at 0).
   * `recent(n)` gives the last n tokens of the prompt and the reply so far
   * (penalties and DRY look back over them).
   */
  sample(distribution: ReadonlyMap<Token, number>, recent: (n: number) => readonly Token[]): ChainResult {
    const p = this.params;
    let cands: Candidate[] = [];
    for (const [id, prob] of distribution) cands.push({ id, logit: prob > 0 ? Math.log(prob) : -Infinity, p: 0 });
    // `sorted`: whether `cands` is in descending logit order now; `vocabularyOrder`: whether llama.cpp's array
    // would still be in token-id order (no sampler sorted or reordered it yet), the same set in another order.
    let sorted = true;
    let vocabularyOrder = true;
    if (this.bias.size > 0 && !this.penalized) {
      const bias = this.bias;
      for (const c of cands) {
        const b = bias.get(c.id);
        if (b !== undefined) c.logit += b;
      }
      sorted = false;
    }
    const sortDesc = () => {
      if (!sorted) cands.sort((a, b) => b.logit - a.logit);
      sorted = true;
      vocabularyOrder = false;
    };
    const softmax = () => {
      let max = -Infinity;
      for (const c of cands) if (c.logit > max) max = c.logit;
      let sum = 0;
      for (const c of cands) {
        c.p = Math.exp(c.logit - max);
        sum += c.p;
      }
      for (const c of cands) c.p /= sum;
    };
    const tempImpl = (temp: number) => {
      if (cands.length === 0) return;
      if (temp <= 0) {
        let best = 0;
        for (let i = 1; i < cands.length; i++) if (cands[i]!.logit > cands[best]!.logit) best = i;
        cands.forEach((c, i) => {
          if (i !== best) c.logit = -Infinity;
        });
        return;
      }
      for (const c of cands) c.logit /= temp;
    };

    if (p.mirostat === 0) {
      for (const name of p.samplers) {
        if (cands.length === 0) break;
        switch (name) {
          case "penalties":
            if (penaltiesActive(p) && !this.penalized) {
              const counts = new Map<Token, number>();
              for (const t of recent(p.repeatLastN)) counts.set(t, (counts.get(t) ?? 0) + 1);
              for (const c of cands) {
                const n = counts.get(c.id);
                if (n === undefined) continue;
                c.logit = c.logit <= 0 ? c.logit * p.repeatPenalty : c.logit / p.repeatPenalty;
                c.logit -= n * p.frequencyPenalty + p.presencePenalty;
              }
              sorted = false;
            }
            break;
          case "dry":
            if (this.dry) {
              const penalties = dryPenalties(this.dry, recent(p.dryPenaltyLastN));
              if (penalties.size > 0) {
                for (const c of cands) {
                  const d = penalties.get(c.id);
                  if (d !== undefined) c.logit -= d;
                }
                sorted = false;
              }
            }
            break;
          case "top_n_sigma": {
            if (p.topNSigma <= 0 || cands.length <= 1) break;
            let max = cands[0]!.logit;
            let sum = 0;
            let n = 0;
            for (const c of cands) {
              if (c.logit === -Infinity) continue;
              max = Math.max(max, c.logit);
              sum += c.logit;
              n++;
            }
            const mean = n > 0 ? sum / n : 0;
            let acc = 0;
            for (const c of cands) if (c.logit !== -Infinity) acc += (c.logit - mean) ** 2;
            const std = n > 0 ? Math.sqrt(acc / n) : 0;
            for (const c of cands) if (c.logit < max - p.topNSigma * std) c.logit = -Infinity;
            break;
          }
          case "top_k":
            if (p.topK > 0) {
              sortDesc();
              cands = cands.slice(0, Math.min(p.topK, cands.length));
            }
            break;
          case "typ_p": {
            if (p.typicalP >= 1) break;
            sortDesc();
            softmax();
            let entropy = 0;
            for (const c of cands) if (c.p > 0) entropy += -c.p * Math.log(c.p);
            const order = cands.map((c, i) => ({ i, score: Math.abs(-Math.log(c.p) - entropy) })).sort((a, b) => a.score - b.score);
            let last = order.length;
            let cum = 0;
            for (let i = 0; i < order.length; i++) {
              cum += cands[order[i]!.i]!.p;
              if (cum > p.typicalP && (p.minKeep === 0 || i >= p.minKeep - 1)) {
                last = i + 1;
                break;
              }
            }
            cands = order.slice(0, last).map((o) => cands[o.i]!);
            sorted = false;
            vocabularyOrder = false;
            break;
          }
          case "top_p": {
            if (p.topP >= 1) break;
            sortDesc();
            softmax();
            let cum = 0;
            let last = cands.length;
            for (let i = 0; i < cands.length; i++) {
              cum += cands[i]!.p;
              if (cum >= p.topP && i + 1 >= p.minKeep) {
                last = i + 1;
                break;
              }
            }
            cands = cands.slice(0, last);
            break;
          }
          case "min_p": {
            if (p.minP <= 0) break;
            let max = -Infinity;
            for (const c of cands) if (c.logit > max) max = c.logit;
            const min = max + Math.log(p.minP);
            // llama.cpp filters in place, keeping the order, when enough are left; else it sorts and keeps min_keep.
            const kept = cands.filter((c) => c.logit >= min);
            if (kept.length > 0 && kept.length >= p.minKeep) {
              cands = kept;
              break;
            }
            sortDesc();
            let i = 1;
            for (; i < cands.length; i++) if (cands[i]!.logit < min && i >= p.minKeep) break;
            cands = cands.slice(0, i);
            break;
          }
          case "xtc": {
            if (p.xtcProbability <= 0 || p.xtcThreshold > 0.5 || cands.length < 2) break;
            if (this.xtcRng.uniformFloat() > p.xtcProbability) break;
            sortDesc();
            softmax();
            let last = 0;
            for (let i = 0; i < cands.length; i++) {
              if (cands[i]!.p >= p.xtcThreshold) last = i;
              else break;
            }
            if (cands.length - last >= p.minKeep && last > 0) cands = cands.slice(last);
            break;
          }
          case "temperature":
            if (p.dynatempRange > 0) {
              const minTemp = Math.max(0, p.temperature - p.dynatempRange);
              const maxTemp = p.temperature + p.dynatempRange;
              if (cands.length <= 1) break;
              const maxEntropy = -Math.log(1 / cands.length);
              sortDesc();
              softmax();
              let entropy = 0;
              for (const c of cands) if (c.p > 0) entropy -= c.p * Math.log(c.p);
              const temp = minTemp + (maxTemp - minTemp) * Math.pow(entropy / maxEntropy, p.dynatempExponent);
              tempImpl(temp);
            } else tempImpl(p.temperature);
            break;
        }
      }
      // Where llama.cpp never sorted, its array is in vocabulary order: the draw walks it so.
      if (vocabularyOrder) cands = inVocabularyOrder(cands, this.vocabSize);
      return this.draw(cands);
    }
    // Mirostat replaces the chain: temperature, then Mirostat (llama-server's common_sampler_init).
    tempImpl(p.temperature);
    sorted = false;
    sortDesc();
    softmax();
    if (p.mirostat === 1) {
      const m = 100;
      let sumTiBi = 0;
      let sumTiSq = 0;
      for (let i = 0; i < m - 1 && i < cands.length - 1; i++) {
        const ti = Math.log((i + 2) / (i + 1));
        const bi = Math.log(cands[i]!.p / cands[i + 1]!.p);
        sumTiBi += ti * bi;
        sumTiSq += ti * ti;
      }
      const sHat = sumTiBi / sumTiSq;
      const epsilonHat = sHat - 1;
      const k = Math.pow((epsilonHat * Math.pow(2, this.mu)) / (1 - Math.pow(this.vocabSize, -epsilonHat)), 1 / sHat);
      cands = cands.slice(0, Math.max(Number.isFinite(k) ? Math.trunc(k) : 1, 1));
    } else {
      const cut = cands.findIndex((c) => -Math.log2(c.p) > this.mu);
      cands = cands.slice(0, cut < 0 ? cands.length : Math.max(cut, 1));
    }
    softmax();
    const result = this.draw(cands, true);
    const surprise = -Math.log2(result.probability);
    this.mu -= p.mirostatEta * (surprise - p.mirostatTau);
    return result;
  }

  /**
   * The draw: llama.cpp's `dist` sampler (softmax, then one uniform double
   * against the running sum, walking the candidates in their order; a lone
   * candidate still takes a draw, as there), or, for Mirostat (`mirostat`:
   * probabilities set), `std::discrete_distribution`.
   */
  private draw(cands: Candidate[], mirostat = false): ChainResult {
    if (cands.length === 0) throw new Error("the sampler chain left no candidate");
    let chosen: number;
    if (mirostat) {
      chosen = this.rng.discrete(cands.map((c) => c.p));
    } else {
      let max = -Infinity;
      for (const c of cands) if (c.logit > max) max = c.logit;
      let sum = 0;
      for (const c of cands) {
        c.p = max === -Infinity ? 0 : Math.exp(c.logit - max);
        sum += c.p;
      }
      const target = sum * this.rng.uniformDouble();
      chosen = cands.length - 1;
      let run = 0;
      for (let i = 0; i < cands.length; i++) {
        run += cands[i]!.p;
        if (run >= target) {
          chosen = i;
          break;
        }
      }
      for (const c of cands) c.p = sum > 0 ? c.p / sum : 0;
    }
    // Only a draw of exactly 0 can land on a candidate of probability 0 (one the grammar or temperature 0 ruled out).
    while (chosen > 0 && cands[chosen]!.p === 0) chosen--;
    while (chosen < cands.length - 1 && cands[chosen]!.p === 0) chosen++;
    const picked = cands[chosen]!;
    const candidates = cands
      .filter((c) => c.p > 0)
      .sort((a, b) => b.p - a.p)
      .map((c) => ({ token: c.id, probability: c.p }));
    return { token: picked.id, probability: picked.p, candidates };
  }
}

/** Candidates by token id: placed by id when there are many (the whole vocabulary, untruncated), else sorted. */
function inVocabularyOrder(cands: Candidate[], vocabSize: number): Candidate[] {
  if (cands.length < 256) return cands.sort((a, b) => a.id - b.id);
  const slots = new Array<Candidate | undefined>(vocabSize);
  for (const c of cands) slots[c.id] = c;
  const ordered: Candidate[] = [];
  for (const c of slots) if (c !== undefined) ordered.push(c);
  return ordered;
}
