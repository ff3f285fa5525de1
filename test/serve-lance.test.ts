// The service suite (test/serve.test.ts) on the LanceDB store: the same tests over an index that
// `index build --store lance` made (test/helpers/serve-fixture.ts reads MATVIT_TEST_STORE).
process.env.MATVIT_TEST_STORE = 'lance';
await import('./serve.test.ts');
