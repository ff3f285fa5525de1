// Imports point one way (`npm run check:imports`): no file-level or folder-level cycles, and no
// import from a lower layer of src/ into a higher one. Layers, lowest first; folders of one layer
// may import each other as long as that makes no cycle. bin/ and scripts/ sit above cli.
// Rules reference: https://github.com/sverweij/dependency-cruiser/blob/main/doc/rules-reference.md
const LAYERS = [
  ['util'],
  ['model'],
  ['data', 'engine'],
  ['index', 'eval', 'train', 'serve', 'import', 'queue'],
  ['client'],
  ['cli', 'web'],
];
const TOOLS = ['bin', 'scripts'];

const folders = (names) => `^src/(${names.join('|')})/`;

/** One rule per layer: nothing in it imports a folder of a higher layer, bin/ or scripts/. */
const upward = LAYERS.map((layer, i) => ({
  name: `upward-import-from-${layer.join('-')}`,
  comment: `src/{${layer.join(',')}} is layer ${i} of ${LAYERS.map((l) => l.join('+')).join(' -> ')}: it may import only lower layers (or its peers, without cycles)`,
  severity: 'error',
  from: { path: folders(layer) },
  to: { path: `${LAYERS.slice(i + 1).length ? `${folders(LAYERS.slice(i + 1).flat())}|` : ''}^(${TOOLS.join('|')})/` },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-unlayered-folder',
      comment: `every file under src/ lives in a folder of a layer (${LAYERS.flat().join(', ')}): add a new folder to LAYERS in .dependency-cruiser.cjs`,
      severity: 'error',
      from: { path: '^src/', pathNot: folders(LAYERS.flat()) },
      to: {},
    },
    {
      name: 'no-import-of-tests',
      comment: 'src/, bin/ and scripts/ never import test code',
      severity: 'error',
      from: { path: `^(src|${TOOLS.join('|')})/` },
      to: { path: '^test/' },
    },
    { name: 'no-file-cycle', comment: 'files that import each other in a circle', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'no-folder-cycle',
      comment: 'folders that import each other in a circle',
      severity: 'error',
      scope: 'folder',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a cycle through types is still a cycle of the design.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.cjs', '.mjs', '.json', '.d.ts'] },
  },
};
