// GET /v1/index: what the service serves (index counts and state, model, engine, corpus submodel,
// menu, cascade, policy, batching), as SearchService.info returns it.
import path from 'node:path';
import type { Encoder } from '../engine/encoder.ts';
import type { IndexStore } from '../index/store-api.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ServeConfig } from './config.ts';
import type { ServiceMenu } from './menu.ts';
import type { EncoderPolicy } from './policy.ts';

/** What the description is read from: the SearchService (named field by field, so that this file does not import it back). */
export interface InfoSource {
  index: IndexStore;
  policy: EncoderPolicy;
  menu: ServiceMenu;
  model: ModelConfig;
  config: ServeConfig;
  state: string;
  readOnly?: string;
  autoWhy: string;
  deps: { encoder: Pick<Encoder, 'description'> };
}

export function serviceInfo(s: InfoSource) {
  const i = s.index.info();
  const m = i.manifest;
  const c = s.policy.cascade;
  return {
    state: s.state,
    index: {
      name: path.basename(path.resolve(i.dir)),
      counts: i.counts,
      labels: i.labels,
      space: m.space,
      dim: m.dim,
      M: m.M,
      ef: m.ef,
      storeSeq: i.storeSeq,
      // Which store, and for a LanceDB replica the version it reads and when it last checked (every refreshMs).
      store: { ...(i.store ?? { kind: s.index.kind }), refreshMs: s.config.refreshMs },
      createdAt: m.createdAt,
      updatedAt: m.updatedAt,
      // What opening it found and did (also in the start-up log).
      opened: {
        snapshot: i.opened.snapshot,
        rebuilt: i.opened.rebuilt,
        readOnly: s.readOnly ?? null,
        damage: i.opened.damage,
        warnings: i.opened.warnings,
      },
    },
    model: {
      name: m.modelName,
      fingerprint: m.fingerprint,
      imageSize: s.model.imageSize,
      channels: s.model.channels,
      depth: s.model.depth,
      mlpDim: s.model.mlpDim,
      classNames: s.model.classNames,
    },
    engine: s.deps.encoder.description,
    corpus: { submodel: s.menu.corpus.name, ffnDims: s.menu.corpus.ffnDims, mflops: s.menu.corpus.mflops, ...m.corpus },
    xlMflops: s.menu.xlMflops,
    menu: s.menu.toJSON(),
    cascade: c && {
      stages: c.stages.map((s) => s.name),
      rules: c.rules,
      k: c.k,
      basis: c.basis,
      tolerance: c.tolerance,
      queries: c.queries,
      heldOut: c.heldOut,
      reference: c.reference,
      calibratedAt: c.calibratedAt,
    },
    policy: {
      auto: s.policy.ladder.map((r) => r.label),
      why: s.autoWhy,
      cascade: c !== null,
      loadLevel: s.policy.load.level,
      load: s.config.load,
    },
    batching: s.config.batch,
  };
}
