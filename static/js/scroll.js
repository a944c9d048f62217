// Keep the newest message in view while it grows, unless the reader scrolled up.

const NEAR_BOTTOM_PX = 80;

export function keepPinned(scroller, content) {
  let pinned = true;
  const toBottom = () => {
    scroller.scrollTop = scroller.scrollHeight;
  };
  scroller.addEventListener(
    "scroll",
    () => {
      pinned = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
    },
    { passive: true },
  );
  new MutationObserver(() => {
    if (pinned) toBottom();
  }).observe(content, { childList: true, subtree: true, characterData: true });
  toBottom();
  return {
    pin() {
      pinned = true;
      toBottom();
    },
  };
}
