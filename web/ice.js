// The page's "ice" module: the ice package's browser build (index.html loads it first) defines these globals.
export const { Ice, Glacier2, IceStorm } = globalThis;
