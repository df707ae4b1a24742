//! Will own the embedded hickory DNS authority that answers service and task
//! names from cluster state, and forwards everything else upstream.
